{#- A timestamptz from source text. Times that carry a zone (`Z`, `+0000`,
    `+02:00`, ` UTC`, ` Europe/Berlin`) keep it; zone-less times (ServiceNow,
    files) are read in the source's zone; bare numbers are epoch seconds. -#}
{% macro to_utc_timestamp(text_expr, zone_expr="'UTC'") -%}
    case
        when nullif(btrim({{ text_expr }}), '') is null then null
        when btrim({{ text_expr }}) ~ '^[0-9]+(\.[0-9]+)?$'
            then to_timestamp(btrim({{ text_expr }})::double precision)
        when btrim({{ text_expr }})
            ~* ':[0-9]{2}(\.[0-9]+)?\s*(z|[+-][0-9]{2}(:?[0-9]{2})?|[a-z][a-z0-9/_+-]*)$'
            then btrim({{ text_expr }})::timestamptz
        else btrim({{ text_expr }})::timestamp
            at time zone coalesce(nullif({{ zone_expr }}, ''), 'UTC')
    end
{%- endmacro %}
