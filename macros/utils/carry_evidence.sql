{#- The three columns every staging row carries from its raw row: the run,
    the snapshot's evidence row and where in the snapshot the row sits. -#}
{% macro carry_evidence(relation_alias) -%}
    {{ relation_alias }}.run_id, {{ relation_alias }}.evidence_id, {{ relation_alias }}.locator as evidence_locator
{%- endmacro %}
