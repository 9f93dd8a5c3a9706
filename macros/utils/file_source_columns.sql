{#- Per source of connector `file`, its configured column names (`columns:` in soxtrail.yml,
    stg_run_config__source_settings rows `column`) as `<field>_column`, and its `timezone`:
    the select of a CTE grouped by source_name, reading `source_settings`. -#}
{% macro file_source_columns(fields) -%}
    select
        source_settings.source_name,
        {%- for field in fields %}
        max(case
            when source_settings.setting = 'column' and source_settings.setting_key = '{{ field }}'
                then source_settings.setting_value
        end) as {{ field }}_column,
        {%- endfor %}
        max(case
            when source_settings.setting = 'timezone'
                then source_settings.setting_value
        end) as time_zone
    from source_settings
    group by source_settings.source_name
{%- endmacro %}
