-- The summary sheet: per control, the population, the exceptions and the
-- verdict. A control with no exceptions is EFFECTIVE; one exception makes it
-- EXCEPTIONS (the auditor judges severity from the control's own sheet).

{%- set controls = control_models() %}

with

controls as (

    {%- for control_id, model_name, control_name, description in controls %}
        select
            '{{ control_id }}' as control_id,
            '{{ control_name }}' as control_name,
            '{{ description | replace("'", "''") }}' as description,
            {{ control_evidence_id(model_name) }} as control_evidence_id
        {{ "union all" if not loop.last }}
    {%- endfor %}

),

control_results as (

    {%- for control_id, model_name, control_name, description in controls %}
        select
            control_rows.control_id,
            control_rows.result
        from {{ ref(model_name) }} as control_rows
        where {{ this_run('control_rows') }}
        {{ "union all" if not loop.last }}
    {%- endfor %}

),

tallies as (

    select
        controls.control_id,
        count(control_results.result) as population,
        count(*) filter (where control_results.result = 'EXCEPTION') as exceptions
    from controls
    left join control_results
        on controls.control_id = control_results.control_id
    group by controls.control_id

),

final as (

    select
        {{ run_id() }} as run_id,
        controls.control_id,
        controls.control_id as item_key,
        controls.control_name,
        controls.description,
        tallies.population,
        tallies.exceptions,
        round(
            (tallies.population - tallies.exceptions)::numeric / nullif(tallies.population, 0), 4
        ) as pass_rate,
        case when tallies.exceptions = 0 then 'EFFECTIVE' else 'EXCEPTIONS' end as result,
        controls.control_evidence_id
    from controls
    inner join tallies
        on controls.control_id = tallies.control_id

)

select * from final
