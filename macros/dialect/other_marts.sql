{#- Dialect primitives of the summary, register, completeness, BK-01 and LG-01
    marts (`mart_` names), beside the shared ones of core.sql: aggregates and
    arrays. `default__` is the PostgreSQL form the marts wrote before, `spark__`
    gives the same result on Spark 4. -#}

{#- ---- aggregates ------------------------------------------------------------ -#}

{#- string_agg in the order of `order_by` (a list of expressions, each
    ascending with nulls last, PostgreSQL's default), optionally over the rows
    `where` holds; null when no value is not null. -#}
{% macro mart_string_agg(expression, separator, order_by, where=none) -%}
    {{ return(adapter.dispatch('mart_string_agg', 'soxtrail')(
        expression, separator, order_by, where)) }}
{%- endmacro %}
{% macro default__mart_string_agg(expression, separator, order_by, where=none) -%}
    string_agg({{ expression }}, {{ separator }} order by {{ order_by | join(', ') }})
    {%- if where is not none %} filter (where {{ where }}){% endif %}
{%- endmacro %}
{% macro spark__mart_string_agg(expression, separator, order_by, where=none) -%}
    {#- not string_agg(...) within group: Spark 4.0 fails on it beside a DISTINCT
        aggregate. The values are sorted as structs of (key is null, key, ...,
        value): nulls last, ties by the value. -#}
    {%- set filtered = ' filter (where ' ~ where ~ ')' if where is not none else '' -%}
    {%- set fields = [] -%}
    {%- for key in order_by -%}
        {%- do fields.append("'k" ~ loop.index ~ "_null', " ~ key ~ " is null") -%}
        {%- do fields.append("'k" ~ loop.index ~ "', " ~ key) -%}
    {%- endfor -%}
    case
        when count({{ expression }}){{ filtered }} > 0
            then array_join(transform(
                array_sort(array_agg(named_struct(
                    {{ fields | join(', ') }}, 'value', {{ expression }}
                )){{ filtered }}),
                agg_element -> agg_element.value
            ), {{ separator }})
    end
{%- endmacro %}

{#- The distinct non-null values joined in ascending (byte) order, optionally
    over the rows `where` holds; null when there is none. PostgreSQL sorts a
    DISTINCT aggregate's input, so `string_agg(distinct x, sep)` is ordered. -#}
{% macro mart_distinct_string_agg(expression, separator, where=none) -%}
    {{ return(adapter.dispatch('mart_distinct_string_agg', 'soxtrail')(
        expression, separator, where)) }}
{%- endmacro %}
{% macro default__mart_distinct_string_agg(expression, separator, where=none) -%}
    string_agg(distinct {{ expression }}, {{ separator }})
    {%- if where is not none %} filter (where {{ where }}){% endif %}
{%- endmacro %}
{% macro spark__mart_distinct_string_agg(expression, separator, where=none) -%}
    {#- not listagg(distinct ...) within group: Spark 4.0 fails on it beside
        another DISTINCT aggregate or with a FILTER clause -#}
    {%- set value = expression if where is none
        else '(case when ' ~ where ~ ' then ' ~ expression ~ ' end)' -%}
    case
        when count({{ value }}) > 0
            then array_join(array_sort(array_agg(distinct {{ value }})), {{ separator }})
    end
{%- endmacro %}

{#- The distinct values as an array in ascending (byte) order, a null element
    last, optionally over the rows `where` holds (null when there is none):
    PostgreSQL `array_agg(distinct x order by x) filter (where ...)`. -#}
{% macro mart_distinct_array_agg(expression, where=none) -%}
    {{ return(adapter.dispatch('mart_distinct_array_agg', 'soxtrail')(expression, where)) }}
{%- endmacro %}
{% macro default__mart_distinct_array_agg(expression, where=none) -%}
    array_agg(distinct {{ expression }} order by {{ expression }})
    {%- if where is not none %} filter (where {{ where }}){% endif %}
{%- endmacro %}
{% macro spark__mart_distinct_array_agg(expression, where=none) -%}
    {#- array_agg skips nulls, a struct holding one is kept; sorted on
        (is null, value) so that the null comes last as in PostgreSQL -#}
    {%- set filtered = ' filter (where ' ~ where ~ ')' if where is not none else '' -%}
    case
        when count(*){{ filtered }} > 0
            then transform(
                array_sort(array_agg(distinct named_struct(
                    'is_null', {{ expression }} is null, 'value', {{ expression }}
                )){{ filtered }}),
                agg_element -> agg_element.value
            )
    end
{%- endmacro %}

{#- ---- arrays ---------------------------------------------------------------- -#}

{#- An array of the given SQL expressions (a list), in that order. -#}
{% macro mart_array(items) -%}
    {{ return(adapter.dispatch('mart_array', 'soxtrail')(items)) }}
{%- endmacro %}
{% macro default__mart_array(items) -%}
    array[{{ items | join(', ') }}]
{%- endmacro %}
{% macro spark__mart_array(items) -%}
    array({{ items | join(', ') }})
{%- endmacro %}

{#- An empty array of a type given as a type macro's name's result, e.g.
    mart_empty_array(t_text_array()). -#}
{% macro mart_empty_array(array_type) -%}
    {{ return(adapter.dispatch('mart_empty_array', 'soxtrail')(array_type)) }}
{%- endmacro %}
{% macro default__mart_empty_array(array_type) -%}
    array[]::{{ array_type }}
{%- endmacro %}
{% macro spark__mart_empty_array(array_type) -%}
    cast(array() as {{ array_type }})
{%- endmacro %}

{#- The array without its null elements (PostgreSQL array_remove(a, null);
    Spark's array_remove with a null gives null). -#}
{% macro mart_array_compact(array_expr) -%}
    {{ return(adapter.dispatch('mart_array_compact', 'soxtrail')(array_expr)) }}
{%- endmacro %}
{% macro default__mart_array_compact(array_expr) -%}
    array_remove({{ array_expr }}, null)
{%- endmacro %}
{% macro spark__mart_array_compact(array_expr) -%}
    filter({{ array_expr }}, array_element -> array_element is not null)
{%- endmacro %}

{#- Whether the array holds the value (PostgreSQL `value = any(array)`). -#}
{% macro mart_array_contains(array_expr, value) -%}
    {{ return(adapter.dispatch('mart_array_contains', 'soxtrail')(array_expr, value)) }}
{%- endmacro %}
{% macro default__mart_array_contains(array_expr, value) -%}
    ({{ value }} = any({{ array_expr }}))
{%- endmacro %}
{% macro spark__mart_array_contains(array_expr, value) -%}
    array_contains({{ array_expr }}, {{ value }})
{%- endmacro %}

{#- The elements joined by the separator, nulls skipped (array_to_string). -#}
{% macro mart_array_join(array_expr, separator) -%}
    {{ return(adapter.dispatch('mart_array_join', 'soxtrail')(array_expr, separator)) }}
{%- endmacro %}
{% macro default__mart_array_join(array_expr, separator) -%}
    array_to_string({{ array_expr }}, {{ separator }})
{%- endmacro %}
{% macro spark__mart_array_join(array_expr, separator) -%}
    array_join({{ array_expr }}, {{ separator }})
{%- endmacro %}

{#- One row per element of an array, as `alias.column`: the last item of a
    FROM clause (PostgreSQL `cross join lateral unnest`, Spark `lateral view`). -#}
{% macro mart_unnest(array_expr, alias, column) -%}
    {{ return(adapter.dispatch('mart_unnest', 'soxtrail')(array_expr, alias, column)) }}
{%- endmacro %}
{% macro default__mart_unnest(array_expr, alias, column) -%}
    cross join lateral unnest({{ array_expr }}) as {{ alias }} ({{ column }})
{%- endmacro %}
{% macro spark__mart_unnest(array_expr, alias, column) -%}
    lateral view explode({{ array_expr }}) {{ alias }} as {{ column }}
{%- endmacro %}

{#- One row per element of a JSON array document, as `alias.value` (jsonb in
    PostgreSQL, JSON text in Spark: read it with json_text): the last item of a
    FROM clause. -#}
{% macro mart_json_elements(json_expr, alias) -%}
    {{ return(adapter.dispatch('mart_json_elements', 'soxtrail')(json_expr, alias)) }}
{%- endmacro %}
{% macro default__mart_json_elements(json_expr, alias) -%}
    cross join lateral jsonb_array_elements({{ json_expr }}) as {{ alias }} (value)
{%- endmacro %}
{% macro spark__mart_json_elements(json_expr, alias) -%}
    lateral view explode(from_json({{ json_expr }}, 'array<string>')) {{ alias }} as value
{%- endmacro %}

{#- ---- text -------------------------------------------------------------------- -#}

{#- A date as `YYYY-MM-DD`. -#}
{% macro mart_date_text(date_expr) -%}
    {{ return(adapter.dispatch('mart_date_text', 'soxtrail')(date_expr)) }}
{%- endmacro %}
{% macro default__mart_date_text(date_expr) -%}
    to_char({{ date_expr }}, 'YYYY-MM-DD')
{%- endmacro %}
{% macro spark__mart_date_text(date_expr) -%}
    date_format({{ date_expr }}, 'yyyy-MM-dd')
{%- endmacro %}

{#- A text as a sort key in byte order, whatever the database's collation
    (Spark compares strings by their UTF-8 bytes). -#}
{% macro mart_byte_order(text_expr) -%}
    {{ return(adapter.dispatch('mart_byte_order', 'soxtrail')(text_expr)) }}
{%- endmacro %}
{% macro default__mart_byte_order(text_expr) -%}
    convert_to({{ text_expr }}, 'UTF8')
{%- endmacro %}
{% macro spark__mart_byte_order(text_expr) -%}
    {{ text_expr }}
{%- endmacro %}
