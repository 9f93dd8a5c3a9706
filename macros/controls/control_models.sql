{#- The controls: (control id, mart, title, question), in control order.
    Declared once, in the control marts' YAML (`config.meta.control`); soxtrail
    reads that declaration (soxtrail.kernel.controls.registry) and hands it to dbt
    as the SOXTRAIL_CONTROLS environment variable, so that the list is known while
    dbt parses (refs must be) and the summary mart, the cross-control tests and
    the workbook read the same list. -#}
{% macro control_models(kind='control') -%}
    {%- set declared = fromjson(env_var('SOXTRAIL_CONTROLS', '[]')) -%}
    {%- if declared | length == 0 -%}
        {{ exceptions.raise_compiler_error(
            "SOXTRAIL_CONTROLS is not set: run dbt through soxtrail (soxtrail run, "
            ~ "soxtrail docs generate, make lint), which sets it from the marts' meta.control") }}
    {%- endif -%}
    {%- set controls = [] -%}
    {%- for control in declared if control['kind'] == kind -%}
        {%- do controls.append((control['id'], control['model'], control['title'],
                                control['question'])) -%}
    {%- endfor -%}
    {{ return(controls) }}
{%- endmacro %}
