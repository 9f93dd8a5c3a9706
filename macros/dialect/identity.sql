{#- Dialect primitives of the audit-log parsing and identity models: a text
    split into rows, and every match of a pattern as rows. Dispatched like
    macros/dialect/core.sql: `default__` is the PostgreSQL form, `spark__` the
    same rows on Spark 4. Patterns are SQL string literals in PostgreSQL (ARE)
    syntax; on Spark they are translated (core.sql `_spark_pattern`). -#}

{#- A text split at every match of a pattern, as an array of text in order
    (PostgreSQL regexp_split_to_array: empty pieces kept, null stays null). -#}
{% macro identity_re_split(value, pattern) -%}
    {{ return(adapter.dispatch('identity_re_split', 'soxtrail')(value, pattern)) }}
{%- endmacro %}
{% macro default__identity_re_split(value, pattern) -%}
    regexp_split_to_array({{ value }}, {{ pattern }})
{%- endmacro %}
{% macro spark__identity_re_split(value, pattern) -%}
    split({{ value }}, {{ _spark_pattern(pattern) }}, -1)
{%- endmacro %}

{#- The elements of an array as rows, to follow `cross join`: the relation
    `alias` with the element (`value_column`) and its 1-based position
    (`position_column`, bigint). No rows for a null or empty array. -#}
{% macro identity_lateral_unnest(array_expr, alias, value_column, position_column) -%}
    {{ return(adapter.dispatch('identity_lateral_unnest', 'soxtrail')(
        array_expr, alias, value_column, position_column)) }}
{%- endmacro %}
{% macro default__identity_lateral_unnest(array_expr, alias, value_column, position_column) -%}
    lateral unnest({{ array_expr }})
        with ordinality as {{ alias }} ({{ value_column }}, {{ position_column }})
{%- endmacro %}
{% macro spark__identity_lateral_unnest(array_expr, alias, value_column, position_column) -%}
    lateral (
        select
            unnested.col as {{ value_column }},
            cast(unnested.pos + 1 as bigint) as {{ position_column }}
        from posexplode({{ array_expr }}) as unnested
    ) as {{ alias }}
{%- endmacro %}

{#- Every match of a pattern in a text, left to right, as rows, to follow
    `cross join`: the relation `alias` with the text of the pattern's group 1
    (`match_column`) and the match's 1-based position (`position_column`,
    bigint). PostgreSQL regexp_matches(..., 'g'); the pattern must have a
    group 1. No rows for a null text. -#}
{% macro identity_lateral_re_matches(value, pattern, alias, match_column, position_column) -%}
    {{ return(adapter.dispatch('identity_lateral_re_matches', 'soxtrail')(
        value, pattern, alias, match_column, position_column)) }}
{%- endmacro %}
{% macro default__identity_lateral_re_matches(value, pattern, alias, match_column, position_column) -%}
    lateral (
        select
            matched.match_groups[1] as {{ match_column }},
            matched.match_position as {{ position_column }}
        from regexp_matches({{ value }}, {{ pattern }}, 'g')
            with ordinality as matched (match_groups, match_position)
    ) as {{ alias }}
{%- endmacro %}
{% macro spark__identity_lateral_re_matches(value, pattern, alias, match_column, position_column) -%}
    lateral (
        select
            matched.col as {{ match_column }},
            cast(matched.pos + 1 as bigint) as {{ position_column }}
        from posexplode(regexp_extract_all({{ value }}, {{ _spark_pattern(pattern) }}, 1)) as matched
    ) as {{ alias }}
{%- endmacro %}
