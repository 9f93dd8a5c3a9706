{#- PASS when no reason applies, else EXCEPTION. -#}
{% macro control_result(reasons_expr) -%}
    case when cardinality({{ reasons_expr }}) = 0 then 'PASS' else 'EXCEPTION' end
{%- endmacro %}
