{#- Custom schemas are used as-is (`marts`, `snapshots`), not prefixed with the
    target schema: the wrapper, the workbook and `verify` name them directly. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
