{#- The id of the evidence row the wrapper writes for a control after the
    build: deterministic, so every mart row can name it before it exists. -#}
{% macro control_evidence_id(model_name=none) -%}
    md5('soxtrail:' || {{ run_id() }}::text || ':' || '{{ model_name or model.name }}')::uuid
{%- endmacro %}
