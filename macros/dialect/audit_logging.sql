{#- Dialect primitives of the audit-log models (staging/db_audit and
    intermediate/logging) that macros/dialect/core.sql does not name. Each is
    dispatched: `default__` is the PostgreSQL form (what the models wrote
    before), `spark__` gives the same result on Spark 4. -#}

{#- The keyword after a CTE's `as` that keeps PostgreSQL from inlining it
    (`materialized`: each regex of the audit message runs once per row).
    Spark has no such keyword and plans CTEs its own way. -#}
{% macro db_audit_materialized() -%}
    {{ return(adapter.dispatch('db_audit_materialized', 'soxtrail')()) }}
{%- endmacro %}
{% macro default__db_audit_materialized() -%}
    materialized
{%- endmacro %}
{% macro spark__db_audit_materialized() -%}
{%- endmacro %}

{#- One CSV field of a pgaudit AUDIT message, as regex text (not a literal):
    a "quoted" field (with "" for ") or a comma-free one. PostgreSQL takes the
    longest match. Java's regex engine recurses once per character in
    `(?:[^"]|"")*` and overflows its stack on a statement of a few thousand
    characters, so Spark gets the unrolled, possessive form: it consumes the
    same text and stops at the same closing quote (the first quote not
    doubled). The two differ only on a quoted field that never closes, which
    leaves the message not well formed (every field null) on both engines. -#}
{% macro db_audit_csv_field() -%}
    {{ return(adapter.dispatch('db_audit_csv_field', 'soxtrail')()) }}
{%- endmacro %}
{% macro default__db_audit_csv_field() -%}
    (?:"(?:[^"]|"")*"|[^,"]*)
{%- endmacro %}
{% macro spark__db_audit_csv_field() -%}
    (?:"[^"]*+(?:""[^"]*+)*+"|[^,"]*)
{%- endmacro %}

{#- A row source of the elements of the JSON array under one key of a
    document, one row each, to put after `cross join lateral` with
    `as <alias> (<column>)`: jsonb values in PostgreSQL, their JSON text in
    Spark (read both with json_text). A missing key, JSON null, or a value that
    is not an array gives no rows (jsonb_array_or_empty). Spark reads the key
    as an array of variants, not with get_json_object: that unquotes a JSON
    string, so a string holding `[...]` would pass for an array. -#}
{% macro db_audit_json_elements(doc, key) -%}
    {{ return(adapter.dispatch('db_audit_json_elements', 'soxtrail')(doc, key)) }}
{%- endmacro %}
{% macro default__db_audit_json_elements(doc, key) -%}
    jsonb_array_elements({{ jsonb_array_or_empty(json_get(doc, key)) }})
{%- endmacro %}
{% macro spark__db_audit_json_elements(doc, key) -%}
    explode(transform(
        from_json({{ doc }}, 'struct<`{{ key }}`: array<variant>>').`{{ key }}`,
        json_element -> to_json(json_element)
    ))
{%- endmacro %}
