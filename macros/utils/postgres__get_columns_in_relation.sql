{#- dbt-postgres reads column types from information_schema.columns, where
    every array is just `ARRAY`; unit-test fixtures then cast to `ARRAY` and
    fail. Arrays are reported by their element type instead (`_text` is
    text[], `_uuid` is uuid[]), so `exception_reasons` and
    `supporting_evidence_ids` can be given and expected in unit tests. -#}
{% macro postgres__get_columns_in_relation(relation) -%}
    {% call statement('get_columns_in_relation', fetch_result=True) %}
        select
            column_name,
            case when data_type = 'ARRAY' then udt_name::text else data_type end as data_type,
            character_maximum_length,
            numeric_precision,
            numeric_scale
        from {{ relation.information_schema('columns') }}
        where table_name = '{{ relation.identifier }}'
            {% if relation.schema %}
            and table_schema = '{{ relation.schema }}'
            {% endif %}
        order by ordinal_position
    {% endcall %}
    {% set table = load_result('get_columns_in_relation').table %}
    {{ return(sql_convert_columns_in_relation(table)) }}
{%- endmacro %}
