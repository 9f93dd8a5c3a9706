{#- The dialect primitives: what PostgreSQL and Spark spell differently, named
    once so that a model stays one SQL file for both engines. Each is dispatched:
    `default__` is the PostgreSQL form (what the models wrote before), `spark__`
    gives the same result on Spark 4 (session time zone UTC, ANSI off). -#}

{#- ---- type names, for casts ------------------------------------------------ -#}

{% macro t_text() %}{{ return(adapter.dispatch('t_text', 'soxtrail')()) }}{% endmacro %}
{% macro default__t_text() %}text{% endmacro %}
{% macro spark__t_text() %}string{% endmacro %}

{#- Spark has no uuid type: ids are their canonical lower-case text. -#}
{% macro t_uuid() %}{{ return(adapter.dispatch('t_uuid', 'soxtrail')()) }}{% endmacro %}
{% macro default__t_uuid() %}uuid{% endmacro %}
{% macro spark__t_uuid() %}string{% endmacro %}

{% macro t_timestamptz() %}{{ return(adapter.dispatch('t_timestamptz', 'soxtrail')()) }}{% endmacro %}
{% macro default__t_timestamptz() %}timestamptz{% endmacro %}
{% macro spark__t_timestamptz() %}timestamp{% endmacro %}

{% macro t_timestamp() %}{{ return(adapter.dispatch('t_timestamp', 'soxtrail')()) }}{% endmacro %}
{% macro default__t_timestamp() %}timestamp{% endmacro %}
{% macro spark__t_timestamp() %}timestamp_ntz{% endmacro %}

{#- The source documents: jsonb in PostgreSQL, JSON text in Spark. -#}
{% macro t_jsonb() %}{{ return(adapter.dispatch('t_jsonb', 'soxtrail')()) }}{% endmacro %}
{% macro default__t_jsonb() %}jsonb{% endmacro %}
{% macro spark__t_jsonb() %}string{% endmacro %}

{% macro t_float() %}{{ return(adapter.dispatch('t_float', 'soxtrail')()) }}{% endmacro %}
{% macro default__t_float() %}double precision{% endmacro %}
{% macro spark__t_float() %}double{% endmacro %}

{% macro t_text_array() %}{{ return(adapter.dispatch('t_text_array', 'soxtrail')()) }}{% endmacro %}
{% macro default__t_text_array() %}text[]{% endmacro %}
{% macro spark__t_text_array() %}array<string>{% endmacro %}

{% macro t_uuid_array() %}{{ return(adapter.dispatch('t_uuid_array', 'soxtrail')()) }}{% endmacro %}
{% macro default__t_uuid_array() %}uuid[]{% endmacro %}
{% macro spark__t_uuid_array() %}array<string>{% endmacro %}

{#- ---- string literals ------------------------------------------------------ -#}

{#- A SQL string literal of the given text. Spark reads backslashes in literals
    as escapes (`'\d'` is `d`); PostgreSQL (standard_conforming_strings) does not. -#}
{% macro text_literal(value) -%}
    {{ return(adapter.dispatch('text_literal', 'soxtrail')(value)) }}
{%- endmacro %}
{% macro default__text_literal(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}
{% macro spark__text_literal(value) -%}
    '{{ value | string | replace("\\", "\\\\") | replace("'", "''") }}'
{%- endmacro %}

{#- The text of a single-quoted SQL literal (`'a''b'` -> `a'b`), or none when the
    expression is not one literal. -#}
{% macro _literal_text(sql_expr) -%}
    {%- set stripped = sql_expr | string | trim -%}
    {%- if modules.re.match("^'([^']|'')*'$", stripped) -%}
        {{ return(stripped[1:-1] | replace("''", "'")) }}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}

{#- ---- regular expressions ------------------------------------------------- -#}

{#- A PostgreSQL (ARE) pattern as a Java pattern with the same matches: `.`
    matches newlines and `$` only the very end (both as in PostgreSQL), POSIX
    classes and the word-boundary escapes `\m \M \y \Y` translated, `[` inside a
    bracket expression literal (Java would nest a class). -#}
{% macro _java_regex(pattern) -%}
    {%- set posix = {
        '[:alpha:]': '\\p{Alpha}', '[:digit:]': '\\d', '[:alnum:]': '\\p{Alnum}',
        '[:space:]': '\\s', '[:upper:]': '\\p{Upper}', '[:lower:]': '\\p{Lower}',
        '[:punct:]': '\\p{Punct}', '[:xdigit:]': '\\p{XDigit}', '[:word:]': '\\w',
        '[:blank:]': '\\h', '[:cntrl:]': '\\p{Cntrl}', '[:print:]': '\\p{Print}',
        '[:graph:]': '\\p{Graph}'} -%}
    {#- \\s and \\S: PostgreSQL's white space (C.UTF-8: the Unicode spaces too; Java's \\s is ASCII) -#}
    {%- set white = '\\t\\n\\x0B\\f\\r \\x{1680}\\x{2000}-\\x{2006}\\x{2008}-\\x{200A}\\x{2028}\\x{2029}\\x{205F}\\x{3000}' -%}
    {%- set escapes = {'m': '\\b(?=\\w)', 'M': '\\b(?<=\\w)', 'y': '\\b', 'Y': '\\B',
                       'Z': '\\z', 's': '[' ~ white ~ ']', 'S': '[^' ~ white ~ ']'} -%}
    {%- set ns = namespace(body=pattern, out='', escape=false, in_class=false,
                           class_pos=0) -%}
    {%- for name, java in posix.items() -%}
        {%- set ns.body = ns.body | replace(name, java) -%}
    {%- endfor -%}
    {%- for ch in ns.body -%}
        {%- if ns.escape -%}
            {%- set ns.escape = false -%}
            {%- if not ns.in_class and ch in escapes -%}
                {%- set ns.out = ns.out ~ escapes[ch] -%}
            {%- else -%}
                {%- set ns.out = ns.out ~ '\\' ~ ch -%}
            {%- endif -%}
            {%- set ns.class_pos = ns.class_pos + 1 -%}
        {%- elif ch == '\\' -%}
            {%- set ns.escape = true -%}
        {%- elif ns.in_class -%}
            {%- if ch == '^' and ns.class_pos == 0 -%}
                {%- set ns.out = ns.out ~ ch -%}
            {%- elif ch == ']' and (ns.class_pos > 1 or (ns.class_pos == 1 and ns.out[-1] != '^')) -%}
                {%- set ns.out = ns.out ~ ch -%}
                {%- set ns.in_class = false -%}
            {%- elif ch in '[]&' -%}
                {%- set ns.out = ns.out ~ '\\' ~ ch -%}
            {%- else -%}
                {%- set ns.out = ns.out ~ ch -%}
            {%- endif -%}
            {%- set ns.class_pos = ns.class_pos + 1 -%}
        {%- elif ch == '[' -%}
            {%- set ns.out = ns.out ~ ch -%}
            {%- set ns.in_class = true -%}
            {%- set ns.class_pos = 0 -%}
        {%- elif ch == '$' -%}
            {%- set ns.out = ns.out ~ '\\z' -%}
        {%- else -%}
            {%- set ns.out = ns.out ~ ch -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return('(?s)' ~ ns.out) }}
{%- endmacro %}

{#- A pattern argument as a Spark SQL expression: a literal is translated
    (_java_regex) and re-quoted; any other expression gets `(?s)` only. -#}
{% macro _spark_pattern(pattern, flags='') -%}
    {%- set text = _literal_text(pattern) -%}
    {%- set prefix = '(?i)' if 'i' in flags else '' -%}
    {%- if text is none -%}
        {{ return("concat('" ~ prefix ~ "(?s)', " ~ pattern ~ ")") }}
    {%- endif -%}
    {{ return(spark__text_literal(prefix ~ _java_regex(text))) }}
{%- endmacro %}

{#- Whether the value matches the pattern anywhere (PostgreSQL `~`); null stays null. -#}
{% macro re_match(value, pattern) -%}
    {{ return(adapter.dispatch('re_match', 'soxtrail')(value, pattern)) }}
{%- endmacro %}
{% macro default__re_match(value, pattern) -%}
    ({{ value }} ~ {{ pattern }})
{%- endmacro %}
{% macro spark__re_match(value, pattern) -%}
    ({{ value }} rlike {{ _spark_pattern(pattern) }})
{%- endmacro %}

{#- Case-insensitive re_match (PostgreSQL `~*`). -#}
{% macro re_imatch(value, pattern) -%}
    {{ return(adapter.dispatch('re_imatch', 'soxtrail')(value, pattern)) }}
{%- endmacro %}
{% macro default__re_imatch(value, pattern) -%}
    ({{ value }} ~* {{ pattern }})
{%- endmacro %}
{% macro spark__re_imatch(value, pattern) -%}
    ({{ value }} rlike {{ _spark_pattern(pattern, 'i') }})
{%- endmacro %}

{#- The first match of the pattern (group 0) or of one of its groups; null when
    the value does not match. -#}
{% macro re_substr(value, pattern, group=0) -%}
    {{ return(adapter.dispatch('re_substr', 'soxtrail')(value, pattern, group)) }}
{%- endmacro %}
{% macro default__re_substr(value, pattern, group=0) -%}
    {%- if group == 0 -%}
        regexp_substr({{ value }}, {{ pattern }})
    {%- else -%}
        (regexp_match({{ value }}, {{ pattern }}))[{{ group }}]
    {%- endif -%}
{%- endmacro %}
{% macro spark__re_substr(value, pattern, group=0) -%}
    {%- set java = _spark_pattern(pattern) -%}
    case
        when {{ value }} rlike {{ java }}
            then regexp_extract({{ value }}, {{ java }}, {{ group }})
    end
{%- endmacro %}

{#- PostgreSQL's regexp_replace: the first match replaced, every match with
    flag `g`, case-insensitive with `i`; `\1`..`\9` and `\&` in the replacement
    are the groups and the match. On Spark the pattern and the replacement must
    be literals (they are translated at compile time). -#}
{% macro re_replace(value, pattern, replacement, flags='') -%}
    {{ return(adapter.dispatch('re_replace', 'soxtrail')(value, pattern, replacement, flags)) }}
{%- endmacro %}
{% macro default__re_replace(value, pattern, replacement, flags='') -%}
    regexp_replace({{ value }}, {{ pattern }}, {{ replacement }}
        {%- if flags %}, '{{ flags }}'{% endif %})
{%- endmacro %}
{% macro spark__re_replace(value, pattern, replacement, flags='') -%}
    {%- set pattern_text = _literal_text(pattern) -%}
    {%- set replacement_text = _literal_text(replacement) -%}
    {%- if pattern_text is none or replacement_text is none -%}
        {{ exceptions.raise_compiler_error(
            "re_replace on Spark needs literal pattern and replacement: "
            ~ pattern ~ ", " ~ replacement) }}
    {%- endif -%}
    {%- set java = _java_regex(pattern_text) -%}
    {%- set shift = 0 if 'g' in flags else 2 -%}
    {%- set ns = namespace(out='', escape=false) -%}
    {%- for ch in replacement_text -%}
        {%- if ns.escape -%}
            {%- set ns.escape = false -%}
            {%- if ch in '123456789' -%}
                {%- set ns.out = ns.out ~ '$' ~ (ch | int + shift) -%}
            {%- elif ch == '&' -%}
                {%- set ns.out = ns.out ~ '$' ~ shift -%}
            {%- else -%}
                {%- set ns.out = ns.out ~ '\\' ~ ch -%}
            {%- endif -%}
        {%- elif ch == '\\' -%}
            {%- set ns.escape = true -%}
        {%- elif ch == '$' -%}
            {%- set ns.out = ns.out ~ '\\$' -%}
        {%- else -%}
            {%- set ns.out = ns.out ~ ch -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if ns.escape -%}{%- set ns.out = ns.out ~ '\\\\' -%}{%- endif -%}
    {%- set prefix = '(?i)' if 'i' in flags else '' -%}
    {%- if 'g' in flags -%}
        regexp_replace({{ value }}, {{ spark__text_literal(prefix ~ java) }}, {{ spark__text_literal(ns.out) }})
    {%- else -%}
        {#- the first match only: anchored at the start, the lazy prefix ends where
            the leftmost match begins, and an anchored pattern matches once -#}
        regexp_replace({{ value }}, {{ spark__text_literal(prefix ~ '(?s)^(.*?)(' ~ java ~ ')') }}, {{ spark__text_literal('$1' ~ ns.out) }})
    {%- endif -%}
{%- endmacro %}

{#- ---- JSON documents ------------------------------------------------------- -#}

{#- The PostgreSQL path operators for a list of keys (strings) and array
    positions (integers), the last one `->>` when as_text. -#}
{% macro _pg_json_path(doc, path, as_text) -%}
    {%- set keys = [path] if path is string or path is number else path -%}
    {%- set ns = namespace(out='(' ~ doc ~ ')') -%}
    {%- for key in keys -%}
        {%- set op = '->>' if (as_text and loop.last) else '->' -%}
        {%- if key is number -%}
            {%- set ns.out = ns.out ~ ' ' ~ op ~ ' ' ~ key -%}
        {%- else -%}
            {%- set ns.out = ns.out ~ ' ' ~ op ~ " '" ~ (key | replace("'", "''")) ~ "'" -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(ns.out) }}
{%- endmacro %}

{#- The JSONPath of Spark's get_json_object for the same keys, as a literal. -#}
{% macro _spark_json_path(path) -%}
    {%- set keys = [path] if path is string or path is number else path -%}
    {%- set ns = namespace(out='$') -%}
    {%- for key in keys -%}
        {%- if key is number -%}
            {%- set ns.out = ns.out ~ '[' ~ key ~ ']' -%}
        {%- elif modules.re.match('^[A-Za-z_][A-Za-z0-9_]*$', key) -%}
            {%- set ns.out = ns.out ~ '.' ~ key -%}
        {%- else -%}
            {%- set ns.out = ns.out ~ "['" ~ key ~ "']" -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(spark__text_literal(ns.out)) }}
{%- endmacro %}

{#- The text at a path of keys in a JSON document (PostgreSQL `->`...`->>`):
    strings unquoted, numbers and booleans as written (Spark re-writes decimals
    as doubles: `1.50` is `1.5`), null when missing or JSON null. Objects and
    arrays come back as JSON text whose spacing differs between the engines
    (jsonb writes `{"a": 1}`, Spark `{"a":1}`): take them with json_subdoc. -#}
{% macro json_text(doc, path) -%}
    {{ return(adapter.dispatch('json_text', 'soxtrail')(doc, path)) }}
{%- endmacro %}
{% macro default__json_text(doc, path) -%}
    {{ _pg_json_path(doc, path, true) }}
{%- endmacro %}
{% macro spark__json_text(doc, path) -%}
    get_json_object({{ doc }}, {{ _spark_json_path(path) }})
{%- endmacro %}

{#- The JSON value at a path of keys, to hand to json_array_texts or
    json_is_array: jsonb in PostgreSQL (`->`), JSON text in Spark. -#}
{% macro json_get(doc, path) -%}
    {{ return(adapter.dispatch('json_get', 'soxtrail')(doc, path)) }}
{%- endmacro %}
{% macro default__json_get(doc, path) -%}
    {{ _pg_json_path(doc, path, false) }}
{%- endmacro %}
{% macro spark__json_get(doc, path) -%}
    get_json_object({{ doc }}, {{ _spark_json_path(path) }})
{%- endmacro %}

{#- Whether a JSON value (json_get) is an array; false when missing. -#}
{% macro json_is_array(json_expr) -%}
    {{ return(adapter.dispatch('json_is_array', 'soxtrail')(json_expr)) }}
{%- endmacro %}
{% macro default__json_is_array(json_expr) -%}
    coalesce(jsonb_typeof({{ json_expr }}) = 'array', false)
{%- endmacro %}
{% macro spark__json_is_array(json_expr) -%}
    coalesce(from_json({{ json_expr }}, 'array<string>') is not null
        and left(ltrim({{ json_expr }}), 1) = '[', false)
{%- endmacro %}

{#- The elements of a JSON array (a jsonb / JSON text value) as an array of
    text, in array order (strings unquoted, JSON null a null element); an empty
    array when the value is missing or not an array. -#}
{% macro json_array_texts(json_expr) -%}
    {{ return(adapter.dispatch('json_array_texts', 'soxtrail')(json_expr)) }}
{%- endmacro %}
{% macro default__json_array_texts(json_expr) -%}
    array(
        select json_element.element_text
        from jsonb_array_elements_text(
            case when jsonb_typeof({{ json_expr }}) = 'array' then {{ json_expr }} else '[]'::jsonb end
        ) with ordinality as json_element (element_text, element_position)
        order by json_element.element_position
    )
{%- endmacro %}
{% macro spark__json_array_texts(json_expr) -%}
    coalesce(
        transform(
            case when left(ltrim({{ json_expr }}), 1) = '[' then from_json({{ json_expr }}, 'array<string>') end,
            json_element -> case
                when left(json_element, 1) in ('{', '[') then {{ _spark_jsonb_spacing('json_element') }}
                else json_element
            end
        ),
        cast(array() as array<string>)
    )
{%- endmacro %}

{#- ---- ids ------------------------------------------------------------------ -#}

{#- A deterministic id from text: PostgreSQL `md5(x)::uuid`; on Spark the same
    8-4-4-4-12 lower-case hex text. -#}
{% macro uuid_from_md5(text_expr) -%}
    {{ return(adapter.dispatch('uuid_from_md5', 'soxtrail')(text_expr)) }}
{%- endmacro %}
{% macro default__uuid_from_md5(text_expr) -%}
    md5({{ text_expr }})::uuid
{%- endmacro %}
{% macro spark__uuid_from_md5(text_expr) -%}
    regexp_replace(md5({{ text_expr }}), '^(.{8})(.{4})(.{4})(.{4})(.{12})$', '$1-$2-$3-$4-$5')
{%- endmacro %}

{#- ---- time ----------------------------------------------------------------- -#}

{#- n hours / n days as an interval (n may be a column or a fraction). Days are
    24 hours: the sessions run in UTC on both engines. -#}
{% macro interval_hours(n) -%}
    {{ return(adapter.dispatch('interval_hours', 'soxtrail')(n)) }}
{%- endmacro %}
{% macro default__interval_hours(n) -%}
    (({{ n }}) * interval '1 hour')
{%- endmacro %}
{% macro spark__interval_hours(n) -%}
    make_dt_interval(0, 0, 0, ({{ n }}) * 3600)
{%- endmacro %}

{% macro interval_days(n) -%}
    {{ return(adapter.dispatch('interval_days', 'soxtrail')(n)) }}
{%- endmacro %}
{% macro default__interval_days(n) -%}
    (({{ n }}) * interval '1 day')
{%- endmacro %}
{% macro spark__interval_days(n) -%}
    make_dt_interval(0, 0, 0, ({{ n }}) * 86400)
{%- endmacro %}

{#- A timestamp plus n seconds (n may be fractional, to the microsecond). -#}
{% macro add_seconds(ts, n) -%}
    {{ return(adapter.dispatch('add_seconds', 'soxtrail')(ts, n)) }}
{%- endmacro %}
{% macro default__add_seconds(ts, n) -%}
    (({{ ts }}) + ({{ n }}) * interval '1 second')
{%- endmacro %}
{% macro spark__add_seconds(ts, n) -%}
    (({{ ts }}) + make_dt_interval(0, 0, 0, {{ n }}))
{%- endmacro %}

{#- An instant (timestamptz) as the wall-clock time (timestamp without zone)
    of a zone: PostgreSQL `ts at time zone zone`. -#}
{% macro at_zone_local(ts, zone) -%}
    {{ return(adapter.dispatch('at_zone_local', 'soxtrail')(ts, zone)) }}
{%- endmacro %}
{% macro default__at_zone_local(ts, zone) -%}
    (({{ ts }}) at time zone {{ zone }})
{%- endmacro %}
{% macro spark__at_zone_local(ts, zone) -%}
    cast(from_utc_timestamp({{ ts }}, {{ zone }}) as timestamp_ntz)
{%- endmacro %}

{#- A wall-clock time (timestamp without zone) of a zone as the instant
    (timestamptz): PostgreSQL `ts at time zone zone`, the other direction. -#}
{% macro local_to_utc(ts, zone) -%}
    {{ return(adapter.dispatch('local_to_utc', 'soxtrail')(ts, zone)) }}
{%- endmacro %}
{% macro default__local_to_utc(ts, zone) -%}
    (({{ ts }}) at time zone {{ zone }})
{%- endmacro %}
{% macro spark__local_to_utc(ts, zone) -%}
    to_utc_timestamp({{ ts }}, {{ zone }})
{%- endmacro %}

{#- The instant after every other (PostgreSQL `'infinity'::timestamptz`); Spark
    has no infinite timestamp and takes its last microsecond, which compares the
    same with every real instant. -#}
{% macro timestamptz_infinity() -%}
    {{ return(adapter.dispatch('timestamptz_infinity', 'soxtrail')()) }}
{%- endmacro %}
{% macro default__timestamptz_infinity() -%}
    'infinity'::timestamptz
{%- endmacro %}
{% macro spark__timestamptz_infinity() -%}
    timestamp'9999-12-31 23:59:59.999999Z'
{%- endmacro %}

{#- Whether a JSON object has a key, whatever its value, JSON null too
    (PostgreSQL `doc ? 'key'`; Spark json_object_keys). -#}
{% macro json_has_key(doc, key) -%}
    {{ return(adapter.dispatch('json_has_key', 'soxtrail')(doc, key)) }}
{%- endmacro %}
{% macro default__json_has_key(doc, key) -%}
    ({{ doc }} ? '{{ key | replace("'", "''") }}')
{%- endmacro %}
{% macro spark__json_has_key(doc, key) -%}
    coalesce(array_contains(json_object_keys({{ doc }}), {{ spark__text_literal(key) }}), false)
{%- endmacro %}

{#- The JSON object or array at a path of keys, as PostgreSQL writes jsonb:
    jsonb itself (`->`) there; on Spark get_json_object's compact text with a
    space after each `:` and `,` outside strings, the spacing of jsonb's text
    (key order is the document's, already jsonb's in the raw rows; numbers are
    re-written as doubles: `1.50` comes back `1.5`). For scalars use json_text. -#}
{% macro json_subdoc(doc, path) -%}
    {{ return(adapter.dispatch('json_subdoc', 'soxtrail')(doc, path)) }}
{%- endmacro %}
{% macro default__json_subdoc(doc, path) -%}
    {{ _pg_json_path(doc, path, false) }}
{%- endmacro %}
{% macro spark__json_subdoc(doc, path) -%}
    {{ _spark_jsonb_spacing('get_json_object(' ~ doc ~ ', ' ~ _spark_json_path(path) ~ ')') }}
{%- endmacro %}

{#- Spark's compact JSON text spaced as jsonb writes it: a space after each `:`
    and `,` outside strings. `\G` keeps each match where the last one ended, so
    a match never starts inside a string; the possessive runs keep Java's regex
    from recursing per character (a long document would overflow its stack). -#}
{% macro _spark_jsonb_spacing(json_text_expr) -%}
    {%- set outside_strings = '\\G((?:[^",:]++|"[^"\\\\]*+(?:\\\\.[^"\\\\]*+)*+")*+)([:,])' -%}
    regexp_replace({{ json_text_expr }}, {{ spark__text_literal(outside_strings) }}, '$1$2 ')
{%- endmacro %}

{#- ---- unit tests ------------------------------------------------------------ -#}

{#- dbt's safe_cast on Spark, as dbt-spark writes it, but a literal in PostgreSQL's
    array text (`'{A,B}'`, `'{}'`) cast to an array type is that array: the unit
    tests' expected rows write array columns (exception_reasons) as PostgreSQL
    prints them, and dbt-spark would paste `{A,B}` into the SQL unquoted. Elements
    are unquoted or double-quoted text without commas; `NULL` is a null element. -#}
{% macro spark__safe_cast(field, type) -%}
    {%- set text = _literal_text(field) if field is string else none -%}
    {%- if (type | lower | trim).startswith('array') and text is not none
            and modules.re.match('^[{].*[}]$', text) -%}
        {%- set elements = [] -%}
        {%- for item in (text[1:-1].split(',') if text[1:-1] | trim else []) -%}
            {%- set item = item | trim -%}
            {%- if item == 'NULL' -%}
                {%- do elements.append('null') -%}
            {%- else -%}
                {%- do elements.append(spark__text_literal(item.strip('"'))) -%}
            {%- endif -%}
        {%- endfor -%}
        cast(array({{ elements | join(', ') }}) as {{ type }})
    {%- else -%}
        {%- set field_clean = field.strip('"').strip("'")
            if (cast_from_string_unsupported_for(type) and field is string) else field -%}
        cast({{ field_clean }} as {{ type }})
    {%- endif -%}
{%- endmacro %}
