-- Reason codes are sorted and unique, so equal findings hash equal in the
-- canonical result.

{%- set controls = control_models() + control_models('completeness') %}

with

control_rows as (

    {%- for _, model_name, _, _ in controls %}
        select
            control.run_id,
            control.item_key,
            control.exception_reasons
        from {{ ref(model_name) }} as control
        {{ "union all" if not loop.last }}
    {%- endfor %}

),

final as (

    select control_rows.*
    from control_rows
    where
        control_rows.exception_reasons
        is distinct from {{ sorted_distinct_texts('control_rows.exception_reasons') }}

)

select * from final
