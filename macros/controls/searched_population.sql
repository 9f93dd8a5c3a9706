{#- The population an absence claim searched: `population_key` when the row's
    reasons include one of `codes`, else null (the row claims nothing absent).
    Its size comes from int_searched_populations_listed, joined on the key. -#}
{% macro searched_population(reasons, codes, population_key) -%}
    case
        when {{ text_array_overlaps(reasons, codes) }}
            then {{ population_key }}
    end
{%- endmacro %}

{#- Whether a text[] holds one of the given codes (PostgreSQL `&&`, Spark
    arrays_overlap); null when the array is. -#}
{% macro text_array_overlaps(array_expr, codes) -%}
    {{ return(adapter.dispatch('text_array_overlaps', 'soxtrail')(array_expr, codes)) }}
{%- endmacro %}

{% macro default__text_array_overlaps(array_expr, codes) -%}
    {{ array_expr }} && array[
            {%- for code in codes %}'{{ code }}'{{ ", " if not loop.last }}{% endfor -%}
        ]::text[]
{%- endmacro %}

{% macro spark__text_array_overlaps(array_expr, codes) -%}
    arrays_overlap({{ array_expr }}, array(
            {%- for code in codes %}'{{ code }}'{{ ", " if not loop.last }}{% endfor -%}
        ))
{%- endmacro %}
