{#- Role-catalog cluster patterns are globs (`*`, `pg-fin-*`, `?`). -#}
{% macro glob_match(value_expr, pattern_expr) -%}
    ({{ value_expr }} like replace(replace(replace(replace(
        {{ pattern_expr }}, '\', '\\'), '%', '\%'), '_', '\_'), '*', '%'))
{%- endmacro %}
