{#- The quarter under review, [quarter_start, quarter_end) as timestamptz. -#}
{% macro quarter_start_at() -%}
    ({{ to_utc_timestamp("'" ~ var('quarter_start') ~ "'::" ~ t_text()) }})
{%- endmacro %}

{% macro quarter_end_at() -%}
    ({{ to_utc_timestamp("'" ~ var('quarter_end') ~ "'::" ~ t_text()) }})
{%- endmacro %}
