{#- A sorted, de-duplicated uuid[] of the non-null ids given, from a list
    of scalar expressions and/or uuid[] expressions. Dispatched: Spark has
    array functions where PostgreSQL unnests. -#}
{% macro sorted_uuids(scalars=[], arrays=[]) -%}
    {{ return(adapter.dispatch('sorted_uuids', 'soxtrail')(scalars, arrays)) }}
{%- endmacro %}

{% macro default__sorted_uuids(scalars=[], arrays=[]) -%}
    array(
        select distinct evidence.evidence_id
        from unnest(
            array[{{ (scalars | join(', ')) if scalars else '' }}]::uuid[]
            {%- for array_expr in arrays %} || coalesce({{ array_expr }}, '{}'::uuid[]){% endfor %}
        ) as evidence (evidence_id)
        where evidence.evidence_id is not null
        order by evidence.evidence_id
    )
{%- endmacro %}

{#- Spark: ids are lower-case text, whose order is the uuid order. -#}
{% macro spark__sorted_uuids(scalars=[], arrays=[]) -%}
    array_sort(array_distinct(filter(concat(
        cast(array({{ (scalars | join(', ')) if scalars else '' }}) as array<string>)
        {%- for array_expr in arrays %},
        coalesce({{ array_expr }}, cast(array() as array<string>)){% endfor %}
    ), evidence_id -> evidence_id is not null)))
{%- endmacro %}
