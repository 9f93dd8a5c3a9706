{#- Role-catalog cluster patterns are globs (`*`, `pg-fin-*`, `?`). The
    backslash literals go through text_literal: Spark reads `'\'` as an escape. -#}
{% macro glob_match(value_expr, pattern_expr) -%}
    ({{ value_expr }} like replace(replace(replace(replace(
        {{ pattern_expr }}, {{ text_literal('\\') }}, {{ text_literal('\\\\') }}), '%', {{ text_literal('\\%') }}), '_', {{ text_literal('\\_') }}), '*', '%'))
{%- endmacro %}
