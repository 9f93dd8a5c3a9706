{#- Identities compare lower-cased; Okta logins and e-mail style names are
    the part before `@`. -#}
{% macro normalize_identity(text_expr) -%}
    nullif(lower(split_part(btrim({{ text_expr }}), '@', 1)), '')
{%- endmacro %}
