{#- The reporting time zone (`var('reporting_timezone')`, an IANA name that
    soxtrail validated) as a quoted SQL literal; anything that is not a zone
    name stops the compile rather than reach the SQL. -#}
{% macro reporting_timezone() -%}
    {%- set zone = var('reporting_timezone', 'UTC') | string -%}
    {%- if not modules.re.match('^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$', zone) -%}
        {{ exceptions.raise_compiler_error(
            "var reporting_timezone: not an IANA time zone name: " ~ zone) }}
    {%- endif -%}
    '{{ zone | replace("'", "''") }}'
{%- endmacro %}
