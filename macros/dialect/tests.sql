{#- The project's data tests' dialect (tests/dbt/). -#}

{#- The text array's distinct elements in "C" (binary) order: what a control's
    exception_reasons must already be. -#}
{% macro sorted_distinct_texts(array_expr) -%}
    {{ return(adapter.dispatch('sorted_distinct_texts', 'soxtrail')(array_expr)) }}
{%- endmacro %}
{% macro default__sorted_distinct_texts(array_expr) -%}
    array(
        select element.code
        from unnest({{ array_expr }}) as element (code)
        group by element.code
        order by element.code collate "C"
    )
{%- endmacro %}
{% macro spark__sorted_distinct_texts(array_expr) -%}
    array_sort(array_distinct({{ array_expr }}))
{%- endmacro %}
