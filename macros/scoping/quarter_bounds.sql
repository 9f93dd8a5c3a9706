{#- The quarter under review, [quarter_start, quarter_end) as timestamptz. -#}
{% macro quarter_start_at() -%}
    ({{ to_utc_timestamp("'" ~ var('quarter_start') ~ "'::text") }})
{%- endmacro %}

{% macro quarter_end_at() -%}
    ({{ to_utc_timestamp("'" ~ var('quarter_end') ~ "'::text") }})
{%- endmacro %}
