{#- The population an absence claim searched: `population_key` when the row's
    reasons include one of `codes`, else null (the row claims nothing absent).
    Its size comes from int_searched_populations_listed, joined on the key. -#}
{% macro searched_population(reasons, codes, population_key) -%}
    case
        when {{ reasons }} && array[
            {%- for code in codes %}'{{ code }}'{{ ", " if not loop.last }}{% endfor -%}
        ]::text[]
            then {{ population_key }}
    end
{%- endmacro %}
