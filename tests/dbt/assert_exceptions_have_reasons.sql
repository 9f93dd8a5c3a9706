-- Every EXCEPTION names at least one reason and every PASS none: the result
-- is derived from the reasons, never set on its own.

{%- set controls = [
    'fct_control_ac01__privileged_access_approved',
    'fct_control_ac02__timely_revocation',
    'fct_control_ac03__quarter_end_access',
    'fct_control_cm01__changes_authorized',
    'fct_control_bk01__backups_performed',
] %}

with

control_rows as (

    {%- for model_name in controls %}
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
