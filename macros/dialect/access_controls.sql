{#- The dialect primitives of the access and change controls (AC-01, AC-02,
    AC-03, CM-01) that macros/dialect/core.sql does not have. Dispatched like
    those: `default__` is the PostgreSQL form the marts wrote before, `spark__`
    gives the same result on Spark 4. -#}

{#- ---- candidate lists (JSON) ------------------------------------------------ -#}

{#- The JSON array of one object per row, as jsonb's text writes it: keys
    ordered by length then bytes, `", "` and `": "` between them; null when no
    row (passes `where`). `fields` is a list of [key, expression] pairs (text,
    boolean or number values), `order_by` a list of expressions sorted
    ascending, nulls last. On Spark the array is text, built from each value's
    JSON (to_json) in the same order; cast it to t_text() for a text column. -#}
{% macro ac_json_objects_agg(fields, order_by, where=none) -%}
    {{ return(adapter.dispatch('ac_json_objects_agg', 'soxtrail')(fields, order_by, where)) }}
{%- endmacro %}

{% macro default__ac_json_objects_agg(fields, order_by, where=none) -%}
    jsonb_agg(
        jsonb_build_object(
            {%- for key, expression in fields %}
            '{{ key }}', {{ expression }}{{ "," if not loop.last }}
            {%- endfor %}
        )
        order by {{ order_by | join(', ') }}
    )
    {%- if where %} filter (where {{ where }}){% endif %}
{%- endmacro %}

{% macro spark__ac_json_objects_agg(fields, order_by, where=none) -%}
    {#- jsonb orders an object's keys by length, then bytewise -#}
    {%- set ranked = [] -%}
    {%- for key, expression in fields -%}
        {%- do ranked.append(['%04d' % (key | length) ~ ' ' ~ key, key, expression]) -%}
    {%- endfor -%}
    {%- set filter_clause = ' filter (where ' ~ where ~ ')' if where else '' -%}
    case
        when count(*){{ filter_clause }} > 0
            then concat('[', array_join(transform(
                array_sort(collect_list(named_struct(
                    {%- for expression in order_by %}
                    'is_null_{{ loop.index }}', ({{ expression }}) is null,
                    'key_{{ loop.index }}', {{ expression }},
                    {%- endfor %}
                    'json', concat(
                        '{',
                        {%- for _, key, expression in ranked | sort(attribute='0') %}
                        '{{ '' if loop.first else ', ' }}"{{ key }}": ',
                        substr(
                            to_json(array({{ expression }})), 2,
                            length(to_json(array({{ expression }}))) - 2
                        ),
                        {%- endfor %}
                        '}'
                    )
                )){{ filter_clause }}),
                candidate -> candidate.json
            ), ', '), ']')
    end
{%- endmacro %}

{#- An empty JSON array, the value of a candidate list with no candidate. -#}
{% macro ac_json_empty_array() -%}
    {{ return(adapter.dispatch('ac_json_empty_array', 'soxtrail')()) }}
{%- endmacro %}

{% macro default__ac_json_empty_array() -%}
    '[]'::jsonb
{%- endmacro %}

{% macro spark__ac_json_empty_array() -%}
    '[]'
{%- endmacro %}

{#- ---- aggregates --------------------------------------------------------------- -#}

{#- The distinct values of a text expression over the group, sorted (bytewise:
    the "C" collation), a null value last, as a text array. -#}
{% macro ac_sorted_distinct_agg(expression) -%}
    {{ return(adapter.dispatch('ac_sorted_distinct_agg', 'soxtrail')(expression)) }}
{%- endmacro %}

{% macro default__ac_sorted_distinct_agg(expression) -%}
    array_agg(distinct {{ expression }} order by {{ expression }})
{%- endmacro %}

{#- collect_set drops nulls, which array_agg keeps -#}
{% macro spark__ac_sorted_distinct_agg(expression) -%}
    case
        when count(*) > count({{ expression }})
            then concat(array_sort(collect_set({{ expression }})), array(cast(null as string)))
        else array_sort(collect_set({{ expression }}))
    end
{%- endmacro %}

{#- ---- time ----------------------------------------------------------------- -#}

{#- The seconds from one instant to a later one, exact to the microsecond: a
    numeric of scale 6 (PostgreSQL's `extract(epoch from interval)`). -#}
{% macro ac_seconds_between(earlier, later) -%}
    {{ return(adapter.dispatch('ac_seconds_between', 'soxtrail')(earlier, later)) }}
{%- endmacro %}

{% macro default__ac_seconds_between(earlier, later) -%}
    extract(epoch from {{ later }} - {{ earlier }})
{%- endmacro %}

{% macro spark__ac_seconds_between(earlier, later) -%}
    (cast(unix_micros({{ later }}) - unix_micros({{ earlier }}) as decimal(24, 0)) * 0.000001)
{%- endmacro %}
