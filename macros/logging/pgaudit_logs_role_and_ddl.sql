{#- Whether a `pgaudit.log` value logs both the ROLE and the DDL classes
    (LG-01): each is named, or `all` is, and neither is subtracted (`-ddl`).
    Case and spaces do not matter; null stays null. Plain string functions. -#}
{% macro pgaudit_logs_role_and_ddl(value_expr) -%}
    {%- set classes = "(',' || replace(lower(" ~ value_expr ~ "), ' ', '') || ',')" -%}
    (
        ({{ classes }} like '%,all,%' or {{ classes }} like '%,role,%')
        and ({{ classes }} like '%,all,%' or {{ classes }} like '%,ddl,%')
        and {{ classes }} not like '%,-role,%'
        and {{ classes }} not like '%,-ddl,%'
    )
{%- endmacro %}
