{#- `ref` without the database: `"marts"."fct_…"`, not `"db"."marts"."fct_…"`.
    A control's compiled SQL is evidence that `soxtrail verify` re-runs; naming
    the database would tie it to the database the run was made in, and a
    restored copy under another name could not re-run it (PostgreSQL refuses
    cross-database references). dbt's own `ref` (builtins.ref) still resolves
    the node and records the dependency; only the rendering changes. On Spark
    the relation is `marts.fct_…` (dbt-spark names no catalog). -#}
{% macro ref() -%}
    {%- set version = kwargs.get('version') or kwargs.get('v') -%}
    {%- if (varargs | length) == 1 -%}
        {%- set relation = builtins.ref(varargs[0], version=version) -%}
    {%- else -%}
        {%- set relation = builtins.ref(varargs[0], varargs[1], version=version) -%}
    {%- endif -%}
    {%- do return(relation.include(database=false)) -%}
{%- endmacro %}
