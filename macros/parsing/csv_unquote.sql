{#- Undo CSV quoting of one field: `"a, ""b"""` -> `a, "b"`. pgaudit quotes
    a statement when it holds commas, quotes or newlines. -#}
{% macro csv_unquote(text_expr) -%}
    case
        when {{ re_match(text_expr, "'^\".*\"$'") }}
            then replace(substr({{ text_expr }}, 2, length({{ text_expr }}) - 2), '""', '"')
        else {{ text_expr }}
    end
{%- endmacro %}
