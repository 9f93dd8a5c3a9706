{#- The instant a local day of the reporting time zone starts (its midnight),
    as a timestamptz: the inverse of local_date(). Dispatched like it. -#}
{% macro local_day_start(date_expr) -%}
    {{ return(adapter.dispatch('local_day_start', 'soxtrail')(date_expr)) }}
{%- endmacro %}

{#- PostgreSQL: a wall-clock timestamp `at time zone` the zone is that instant. -#}
{% macro default__local_day_start(date_expr) -%}
    ((({{ date_expr }})::timestamp) at time zone {{ reporting_timezone() }})
{%- endmacro %}

{#- Spark: to_utc_timestamp places the wall-clock midnight in the zone. -#}
{% macro spark__local_day_start(date_expr) -%}
    {{ local_to_utc('cast(' ~ date_expr ~ ' as timestamp_ntz)', reporting_timezone()) }}
{%- endmacro %}
