{#- The reason codes whose condition holds, as a sorted text[] ('{}' when
    none). Conditions are SQL booleans; null counts as "does not apply". -#}
{% macro exception_reasons(reasons) -%}
    {%- set codes = reasons.keys() | list | sort -%}
    array_remove(array[
        {%- for code in codes %}
        case when {{ reasons[code] }} then '{{ code }}' end{{ "," if not loop.last }}
        {%- endfor %}
    ]::text[], null)
{%- endmacro %}
