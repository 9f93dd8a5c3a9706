{#- Every day of the quarter under review, as local days of the reporting time
    zone: one row per day, named `day_column`. The populations of BK-01 and
    LG-01 and LG-01's timeline are built on it. Dispatched: PostgreSQL's
    generate_series is Spark's explode(sequence()). -#}
{% macro quarter_days(day_column) -%}
    {{ return(adapter.dispatch('quarter_days', 'soxtrail')(day_column)) }}
{%- endmacro %}

{% macro default__quarter_days(day_column) -%}
    select quarter_day::date as {{ day_column }}
    from generate_series(
        {{ local_date(quarter_start_at()) }},
        {{ local_date(quarter_end_at()) }} - 1,
        interval '1 day'
    ) as quarter_days (quarter_day)
{%- endmacro %}

{% macro spark__quarter_days(day_column) -%}
    select explode(sequence(
        {{ local_date(quarter_start_at()) }},
        date_add({{ local_date(quarter_end_at()) }}, -1)
    )) as {{ day_column }}
{%- endmacro %}
