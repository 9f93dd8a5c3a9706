{#- The day of the reporting time zone on which a timestamptz falls: the
    quarter's days (BK-01) are local days of that zone, not UTC days.
    Dispatched: each adapter spells "this instant's local date" its own way. -#}
{% macro local_date(timestamp_expr) -%}
    {{ return(adapter.dispatch('local_date', 'soxtrail')(timestamp_expr)) }}
{%- endmacro %}

{#- PostgreSQL: `at time zone` turns the instant into local wall time. -#}
{% macro default__local_date(timestamp_expr) -%}
    (({{ timestamp_expr }}) at time zone {{ reporting_timezone() }})::date
{%- endmacro %}

{#- Spark: from_utc_timestamp gives the zone's wall time, read as a date in the
    UTC session. -#}
{% macro spark__local_date(timestamp_expr) -%}
    cast({{ at_zone_local(timestamp_expr, reporting_timezone()) }} as date)
{%- endmacro %}
