{#- A role name as PostgreSQL resolves it: quoted names keep their case,
    unquoted names fold to lower case. -#}
{% macro unquote_identifier(text_expr) -%}
    case
        when {{ re_match('btrim(' ~ text_expr ~ ')', "'^\".*\"$'") }}
            then replace(substr(btrim({{ text_expr }}), 2, length(btrim({{ text_expr }})) - 2), '""', '"')
        else lower(btrim({{ text_expr }}))
    end
{%- endmacro %}
