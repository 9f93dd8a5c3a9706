{#- A statement without its comments and with whitespace collapsed, so the
    grant/revoke patterns see `GRANT a TO b` however it was typed. -#}
{% macro strip_sql_comments(text_expr) -%}
    btrim({{ re_replace(re_replace(re_replace(
        text_expr,
        "'/\\*([^*]|\\*+[^*/])*\\*+/'", "' '", 'g'),
        "'--[^\\n]*'", "' '", 'g'),
        "'\\s+'", "' '", 'g') }}, ' ;')
{%- endmacro %}
