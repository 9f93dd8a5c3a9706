{#- An instant as ISO 8601 UTC text to the second (`2024-08-12T13:00:00Z`),
    the way LG-01 writes periods. Dispatched: each adapter formats its own way. -#}
{% macro utc_text(timestamp_expr) -%}
    {{ return(adapter.dispatch('utc_text', 'soxtrail')(timestamp_expr)) }}
{%- endmacro %}

{#- PostgreSQL: to_char of the UTC wall time. -#}
{% macro default__utc_text(timestamp_expr) -%}
    to_char(({{ timestamp_expr }}) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
{%- endmacro %}

{#- Spark: date_format in the UTC session (Java pattern letters). -#}
{% macro spark__utc_text(timestamp_expr) -%}
    date_format({{ timestamp_expr }}, 'yyyy-MM-dd''T''HH:mm:ss''Z''')
{%- endmacro %}
