{#- A jsonb value to unnest with jsonb_array_elements: the array itself, or an
    empty array when the value is missing or not an array (the sources are not
    ours; a malformed document must not fail the whole statement). -#}
{% macro jsonb_array_or_empty(jsonb_expr) -%}
    case
        when jsonb_typeof({{ jsonb_expr }}) = 'array'
            then {{ jsonb_expr }}
        else '[]'::jsonb
    end
{%- endmacro %}
