{#- The reason codes whose condition holds, as a sorted text[] ('{}' when
    none). Conditions are SQL booleans; null counts as "does not apply".
    Dispatched: Spark's array_remove gives null when asked to remove null. -#}
{% macro exception_reasons(reasons) -%}
    {{ return(adapter.dispatch('exception_reasons', 'soxtrail')(reasons)) }}
{%- endmacro %}

{#- PostgreSQL: an array of the codes or nulls, nulls removed. -#}
{% macro default__exception_reasons(reasons) -%}
    {%- set codes = reasons.keys() | list | sort -%}
    array_remove(array[
        {%- for code in codes %}
        case when {{ reasons[code] }} then '{{ code }}' end{{ "," if not loop.last }}
        {%- endfor %}
    ]::text[], null)
{%- endmacro %}

{#- Spark: the same array, nulls filtered out. -#}
{% macro spark__exception_reasons(reasons) -%}
    {%- set codes = reasons.keys() | list | sort -%}
    filter(cast(array(
        {%- for code in codes %}
        case when {{ reasons[code] }} then '{{ code }}' end{{ "," if not loop.last }}
        {%- endfor %}
    ) as array<string>), reason_code -> reason_code is not null)
{%- endmacro %}
