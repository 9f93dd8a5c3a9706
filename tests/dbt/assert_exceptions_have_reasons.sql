-- Every EXCEPTION names at least one reason and every PASS none: the result
-- is derived from the reasons, never set on its own.

{%- set controls = control_models() + control_models('completeness') %}

with

control_rows as (

    {%- for _, model_name, _, _ in controls %}
        select
            control.run_id,
            control.control_id,
            control.item_key,
            control.result,
            control.exception_reasons
        from {{ ref(model_name) }} as control
        {{ "union all" if not loop.last }}
    {%- endfor %}

),

final as (

    select control_rows.*
    from control_rows
    where
        (control_rows.result = 'EXCEPTION' and cardinality(control_rows.exception_reasons) = 0)
        or (control_rows.result = 'PASS' and cardinality(control_rows.exception_reasons) > 0)
        or control_rows.exception_reasons is null

)

select * from final
