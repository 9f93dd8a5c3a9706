{#- Every day of the quarter under review, as local days of the reporting time
    zone: one row per day, named `day_column`. The populations of BK-01 and
    LG-01 and LG-01's timeline are built on it. -#}
{% macro quarter_days(day_column) -%}
    select quarter_day::date as {{ day_column }}
    from generate_series(
        {{ local_date(quarter_start_at()) }},
        {{ local_date(quarter_end_at()) }} - 1,
        interval '1 day'
    ) as quarter_days (quarter_day)
{%- endmacro %}
