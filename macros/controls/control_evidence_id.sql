{#- The id of the evidence row the wrapper writes for a control after the
    build: deterministic, so every mart row can name it before it exists. -#}
{% macro control_evidence_id(model_name=none) -%}
    {{ uuid_from_md5("'soxtrail:' || " ~ run_id() ~ "::" ~ t_text() ~ " || ':' || '"
                     ~ (model_name or model.name) ~ "'") }}
{%- endmacro %}
