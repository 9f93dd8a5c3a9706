-- The summary's counts are the control marts' (and the completeness marts')
-- counts for the same run.

{%- set controls = control_models() + control_models('completeness') %}

with

control_counts as (

    {%- for _, model_name, _, _ in controls %}
        select
            control.run_id,
            control.control_id,
            count(*) as population,
            count(*) filter (where control.result = 'EXCEPTION') as exceptions
        from {{ ref(model_name) }} as control
        group by control.run_id, control.control_id
        {{ "union all" if not loop.last }}
    {%- endfor %}

),

final as (

    select
        summary.run_id,
        summary.control_id,
        summary.population,
        control_counts.population as control_population,
        summary.exceptions,
        control_counts.exceptions as control_exceptions
    from {{ ref('fct_control_summary') }} as summary
    left join control_counts
        on
            summary.run_id = control_counts.run_id
            and summary.control_id = control_counts.control_id
    where
        summary.population <> coalesce(control_counts.population, 0)
        or summary.exceptions <> coalesce(control_counts.exceptions, 0)

)

select * from final
