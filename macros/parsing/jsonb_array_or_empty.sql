{#- A jsonb value to unnest with jsonb_array_elements: the array itself, or an
    empty array when the value is missing or not an array (the sources are not
    ours; a malformed document must not fail the whole statement).
    Dispatched: on Spark the value is JSON text (json_get), and so is the result. -#}
{% macro jsonb_array_or_empty(jsonb_expr) -%}
    {{ return(adapter.dispatch('jsonb_array_or_empty', 'soxtrail')(jsonb_expr)) }}
{%- endmacro %}

{% macro default__jsonb_array_or_empty(jsonb_expr) -%}
    case
        when jsonb_typeof({{ jsonb_expr }}) = 'array'
            then {{ jsonb_expr }}
        else '[]'::jsonb
    end
{%- endmacro %}

{% macro spark__jsonb_array_or_empty(jsonb_expr) -%}
    case
        when {{ json_is_array(jsonb_expr) }}
            then {{ jsonb_expr }}
        else '[]'
    end
{%- endmacro %}
