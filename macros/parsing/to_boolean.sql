{#- Catalog exports spell booleans `t`/`f` (psql --csv) or `true`/`false`. -#}
{% macro to_boolean(text_expr) -%}
    (lower(btrim({{ text_expr }})) in ('t', 'true', '1', 'yes', 'y'))
{%- endmacro %}
