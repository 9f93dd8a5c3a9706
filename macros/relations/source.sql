{#- `source` without the database: `"raw"."pgaudit_csvlog"`, not
    `"db"."raw"."pgaudit_csvlog"`, for the reason `ref` gives (macros/relations/ref.sql):
    the compiled SQL a run stores must re-run in a copy under another name. -#}
{% macro source(source_name, table_name) -%}
    {%- do return(builtins.source(source_name, table_name).include(database=false)) -%}
{%- endmacro %}
