{#- Dialect primitives of the source staging models (tickets, IAM events,
    backups) and the scope and evidence models: what PostgreSQL and Spark spell
    differently, beyond the shared ones of macros/dialect/core.sql. Each is
    dispatched: `default__` is the PostgreSQL form (what the models wrote
    before), `spark__` gives the same result on Spark 4. -#}

{#- ---- JSON documents ------------------------------------------------------- -#}

{#- The text of one key of a JSON object, the key an expression (a file's
    configured column name): PostgreSQL `doc ->> key`. Null when the document
    is not an object, or the key is missing or JSON null. -#}
{% macro sources_json_text_at_key(doc, key_expr) -%}
    {{ return(adapter.dispatch('sources_json_text_at_key', 'soxtrail')(doc, key_expr)) }}
{%- endmacro %}
{% macro default__sources_json_text_at_key(doc, key_expr) -%}
    ({{ doc }} ->> {{ key_expr }})
{%- endmacro %}
{#- a map lookup takes any key as it is (a JSONPath would need quoting) -#}
{% macro spark__sources_json_text_at_key(doc, key_expr) -%}
    element_at(from_json({{ doc }}, 'map<string,string>'), {{ key_expr }})
{%- endmacro %}

{#- The text at a dotted path held in an expression (a source's configured
    field path, e.g. `fields.status.name`, `approvers.0.name`): PostgreSQL
    `doc #>> string_to_array(path, '.')`. On Spark the path is walked one
    segment at a time, as PostgreSQL does: an object's key (any text), an
    array's position (an integer, negative from the end). -#}
{% macro sources_json_text_at_path(doc, path_expr) -%}
    {{ return(adapter.dispatch('sources_json_text_at_path', 'soxtrail')(doc, path_expr)) }}
{%- endmacro %}
{% macro default__sources_json_text_at_path(doc, path_expr) -%}
    ({{ doc }} #>> string_to_array({{ path_expr }}, '.'))
{%- endmacro %}
{% macro spark__sources_json_text_at_path(doc, path_expr) -%}
    aggregate(
        split({{ path_expr }}, '[.]'),
        {{ doc }},
        (json_value, path_segment) -> case
            when left(ltrim(json_value), 1) = '[' then case
                when path_segment rlike '^-?[0-9]{1,9}$' then element_at(
                    from_json(json_value, 'array<string>'),
                    cast(path_segment as int) + case when path_segment like '-%' then 0 else 1 end
                )
            end
            else element_at(from_json(json_value, 'map<string,string>'), path_segment)
        end
    )
{%- endmacro %}

{#- The elements of a JSON array as rows, for a lateral join
    `cross join lateral {{ sources_json_array_elements(x) }} as alias (value)`: each
    element a JSON value for json_text (jsonb in PostgreSQL, JSON text in
    Spark); no rows when the value is missing or not an array. -#}
{% macro sources_json_array_elements(json_expr) -%}
    {{ return(adapter.dispatch('sources_json_array_elements', 'soxtrail')(json_expr)) }}
{%- endmacro %}
{% macro default__sources_json_array_elements(json_expr) -%}
    jsonb_array_elements({{ jsonb_array_or_empty(json_expr) }})
{%- endmacro %}
{% macro spark__sources_json_array_elements(json_expr) -%}
    explode({{ json_array_texts(json_expr) }})
{%- endmacro %}

{#- A relation's JSON document read once per row, for a lateral join
    `cross join lateral {{ sources_json_doc_once(alias ~ '.doc') }} as decompressed`
    giving `decompressed.doc`. PostgreSQL: `doc #> '{}'` (the doc itself) in a
    subquery the planner keeps apart (`limit 1`), so that the fields extracted
    from it do not each decompress the stored doc again. Spark keeps the text
    as it is. -#}
{% macro sources_json_doc_once(doc) -%}
    {{ return(adapter.dispatch('sources_json_doc_once', 'soxtrail')(doc)) }}
{%- endmacro %}
{% macro default__sources_json_doc_once(doc) -%}
    (select {{ doc }} #> '{}' as doc limit 1)
{%- endmacro %}
{% macro spark__sources_json_doc_once(doc) -%}
    (select {{ doc }} as doc)
{%- endmacro %}

{#- Jira's approval time when it is only a status transition: the earliest
    `created` (as timestamptz) of the change-history entries
    (`changelog.histories`) with an item moving the status (`field` = status)
    into one of the statuses (a text array, lower case, compared lower-cased);
    null when there is none. -#}
{% macro sources_changelog_approved_at(doc, statuses) -%}
    {{ return(adapter.dispatch('sources_changelog_approved_at', 'soxtrail')(doc, statuses)) }}
{%- endmacro %}
{% macro default__sources_changelog_approved_at(doc, statuses) -%}
    (
        select min({{ to_utc_timestamp("history.value ->> 'created'") }})
        from
            jsonb_array_elements(
                {{ jsonb_array_or_empty(doc ~ " #> '{changelog,histories}'") }}
            ) as history (value)
        where exists (
            select 1
            from
                jsonb_array_elements(
                    {{ jsonb_array_or_empty("history.value -> 'items'") }}
                ) as history_item (value)
            where
                history_item.value ->> 'field' = 'status'
                and lower(history_item.value ->> 'toString') = any({{ statuses }})
        )
    )
{%- endmacro %}
{% macro spark__sources_changelog_approved_at(doc, statuses) -%}
    array_min(transform(
        filter(
            {{ json_array_texts(json_get(doc, ['changelog', 'histories'])) }},
            history -> exists(
                {{ json_array_texts(json_get('history', ['items'])) }},
                history_item ->
                    {{ json_text('history_item', ['field']) }} = 'status'
                    and array_contains(
                        {{ statuses }}, lower({{ json_text('history_item', ['toString']) }})
                    )
            )
        ),
        history -> {{ to_utc_timestamp(json_text('history', ['created'])) }}
    ))
{%- endmacro %}

{#- ---- arrays and aggregates ------------------------------------------------ -#}

{#- A text array of the given SQL text expressions (a list), in that order. -#}
{% macro sources_text_array_of(items) -%}
    {{ return(adapter.dispatch('sources_text_array_of', 'soxtrail')(items)) }}
{%- endmacro %}
{% macro default__sources_text_array_of(items) -%}
    array[{{ items | join(', ') }}]::text[]
{%- endmacro %}
{% macro spark__sources_text_array_of(items) -%}
    cast(array({{ items | join(', ') }}) as array<string>)
{%- endmacro %}

{#- Whether a value is an element of an array: PostgreSQL `value = any(array)`;
    null when the value is null, or when it is not found and the array holds a
    null. -#}
{% macro sources_array_has(array_expr, value_expr) -%}
    {{ return(adapter.dispatch('sources_array_has', 'soxtrail')(array_expr, value_expr)) }}
{%- endmacro %}
{% macro default__sources_array_has(array_expr, value_expr) -%}
    {{ value_expr }} = any({{ array_expr }})
{%- endmacro %}
{% macro spark__sources_array_has(array_expr, value_expr) -%}
    array_contains({{ array_expr }}, {{ value_expr }})
{%- endmacro %}

{#- The distinct non-null values of a group in ascending (binary) order, joined
    by a separator; null when the group has none. -#}
{% macro sources_string_agg_distinct_sorted(text_expr, separator) -%}
    {{ return(adapter.dispatch('sources_string_agg_distinct_sorted', 'soxtrail')(text_expr, separator)) }}
{%- endmacro %}
{% macro default__sources_string_agg_distinct_sorted(text_expr, separator) -%}
    string_agg(distinct {{ text_expr }}, {{ separator }} order by {{ text_expr }})
{%- endmacro %}
{% macro spark__sources_string_agg_distinct_sorted(text_expr, separator) -%}
    listagg(distinct {{ text_expr }}, {{ separator }}) within group (order by {{ text_expr }})
{%- endmacro %}

{#- The value of a group's row that comes first by an ordering expression
    (ascending; the ordering expression must not be null): PostgreSQL
    `(array_agg(value order by ordering))[1]`. -#}
{% macro sources_first_by_order(value_expr, order_expr) -%}
    {{ return(adapter.dispatch('sources_first_by_order', 'soxtrail')(value_expr, order_expr)) }}
{%- endmacro %}
{% macro default__sources_first_by_order(value_expr, order_expr) -%}
    (array_agg({{ value_expr }} order by {{ order_expr }}))[1]
{%- endmacro %}
{% macro spark__sources_first_by_order(value_expr, order_expr) -%}
    min_by({{ value_expr }}, {{ order_expr }})
{%- endmacro %}

{#- ---- common table expressions --------------------------------------------- -#}

{#- `materialized` before a CTE's body in PostgreSQL (computed once per query);
    nothing in Spark, which has no such hint. -#}
{% macro sources_cte_materialized() -%}
    {{ return(adapter.dispatch('sources_cte_materialized', 'soxtrail')()) }}
{%- endmacro %}
{% macro default__sources_cte_materialized() -%}
    materialized
{%- endmacro %}
{% macro spark__sources_cte_materialized() -%}
{%- endmacro %}
