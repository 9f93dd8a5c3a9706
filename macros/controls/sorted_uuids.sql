{#- A sorted, de-duplicated uuid[] of the non-null ids given, from a list
    of scalar expressions and/or uuid[] expressions. -#}
{% macro sorted_uuids(scalars=[], arrays=[]) -%}
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
