{#- A timestamptz from source text. Times that carry a zone (`Z`, `+0000`,
    `+02:00`, ` UTC`, ` Europe/Berlin`) keep it; zone-less times (ServiceNow,
    files) are read in the source's zone; bare numbers are epoch seconds.
    Dispatched: each engine parses date-time text its own way. -#}
{% macro to_utc_timestamp(text_expr, zone_expr="'UTC'") -%}
    {{ return(adapter.dispatch('to_utc_timestamp', 'soxtrail')(text_expr, zone_expr)) }}
{%- endmacro %}

{% macro default__to_utc_timestamp(text_expr, zone_expr="'UTC'") -%}
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

{#- Spark: epoch seconds rounded to the microsecond as PostgreSQL's to_timestamp
    does; a cast to timestamp reads the zone the text carries (an offset, Z, UTC,
    a region name), a zone abbreviation (`CEST`, `EDT`: what log_timezone writes
    into PostgreSQL's own logs) is read by to_timestamp's `z` (Java's zone names:
    an ambiguous one such as IST may differ from PostgreSQL's abbreviation table),
    and a cast to timestamp_ntz gives the wall time that to_utc_timestamp places
    in the zone. -#}
{% macro spark__to_utc_timestamp(text_expr, zone_expr="'UTC'") -%}
    case
        when nullif(btrim({{ text_expr }}), '') is null then null
        when {{ re_match('btrim(' ~ text_expr ~ ')', "'^[0-9]+(\\.[0-9]+)?$'") }}
            then timestamp_micros(cast(round(cast(btrim({{ text_expr }}) as double) * 1000000) as bigint))
        when {{ re_imatch('btrim(' ~ text_expr ~ ')',
                "':[0-9]{2}(\\.[0-9]+)?\\s*(z|[+-][0-9]{2}(:?[0-9]{2})?|[a-z][a-z0-9/_+-]*)$'") }}
            then coalesce(
                cast(btrim({{ text_expr }}) as timestamp),
                to_timestamp(btrim({{ text_expr }}),
                    'yyyy-MM-dd HH:mm:ss[.SSSSSS][.SSSSS][.SSSS][.SSS][.SS][.S] z')
            )
        else to_utc_timestamp(cast(btrim({{ text_expr }}) as timestamp_ntz),
            coalesce(nullif({{ zone_expr }}, ''), 'UTC'))
    end
{%- endmacro %}
