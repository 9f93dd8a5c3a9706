{#- The controls' source systems: (control id, [system, ...]), in control order,
    from the same declaration as control_models() (`systems` of meta.control). -#}
{% macro control_systems() -%}
    {%- set declared = fromjson(env_var('SOXTRAIL_CONTROLS', '[]')) -%}
    {%- set found = [] -%}
    {%- for control in declared if control['kind'] == 'control' -%}
        {%- do found.append((control['id'], control.get('systems') or [])) -%}
    {%- endfor -%}
    {{ return(found) }}
{%- endmacro %}
