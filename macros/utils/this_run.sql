{#- The predicate restricting a raw table to the run being reconciled. -#}
{% macro this_run(relation_alias) -%}
    {{ relation_alias }}.run_id = {{ run_id() }}
{%- endmacro %}
