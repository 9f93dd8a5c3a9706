{#- The run being reconciled, as a SQL uuid literal (its text on Spark, which
    has no uuid type). Raises when the run is not given, so a model can never
    silently read every run's rows. -#}
{% macro run_id() -%}
    {%- set value = var('run_id', '') | string | trim -%}
    {%- if value == '' or value == 'None' -%}
        {%- if execute and flags.WHICH in ('run', 'build', 'test', 'compile', 'show', 'snapshot') -%}
            {{ exceptions.raise_compiler_error("soxtrail: var 'run_id' is required: dbt build --vars '{run_id: <uuid>, ...}'") }}
        {%- endif -%}
        {%- set value = '00000000-0000-0000-0000-000000000000' -%}
    {%- endif -%}
    '{{ value }}'::{{ t_uuid() }}
{%- endmacro %}
