{#- One row per population the controls may search: `population_key` and
    `searched_count`, the evidence objects it holds (see
    int_searched_populations_listed). A control mart left-joins it on its
    `searched_population`. -#}
{% macro searched_population_sizes() -%}
    select
        searched_populations.population_key,
        max(searched_populations.searched_count)::integer as searched_count
    from {{ ref('int_searched_populations_listed') }} as searched_populations
    group by searched_populations.population_key
{%- endmacro %}
