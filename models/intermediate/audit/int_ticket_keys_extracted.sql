-- The ticket key each audit entry names, if any: the first key inside a SQL
-- comment of the statement (`/* CHG-2001 */`, `-- DBA-101`), else the first
-- key in application_name. Keys in string literals or identifiers are data,
-- not references, and are ignored.

with

audit_entries as (

    select * from {{ ref('stg_db_audit__audit_entries') }}

),

statement_tokens as (

    -- literals, quoted identifiers and comments, left to right, so that a
    -- `--` inside a literal never opens a comment
    select
        audit_entries.audit_entry_id,
        statement_token.match[1] as token_text,
        statement_token.token_position
    from audit_entries
    cross join lateral regexp_matches(
        audit_entries.statement_text,
        $$('(?:[^']|'')*'|"(?:[^"]|"")*"|/\*(?:[^*]|\*+[^*/])*\*+/|--[^\n]*)$$,
        'g'
    ) with ordinality as statement_token (match, token_position)

),

comment_keys as (

    select
        statement_tokens.audit_entry_id,
        comment_key.match[1] as ticket_key,
        'statement_comment' as ticket_key_source,
        1 as source_priority,
        statement_tokens.token_position,
        comment_key.key_position
    from statement_tokens
    cross join
        lateral regexp_matches(
            statement_tokens.token_text,
            '({{ var("ticket_key_pattern") | string | replace("'", "''") }})',
            'g'
        ) with ordinality as comment_key (match, key_position)
    where
        statement_tokens.token_text like '/*%'
        or statement_tokens.token_text like '--%'

),

application_name_keys as (

    select
        audit_entries.audit_entry_id,
        application_key.match[1] as ticket_key,
        'application_name' as ticket_key_source,
        2 as source_priority,
        0::bigint as token_position,
        application_key.key_position
    from audit_entries
    cross join lateral regexp_matches(
        audit_entries.application_name,
        '({{ var("ticket_key_pattern") | string | replace("'", "''") }})',
        'g'
    ) with ordinality as application_key (match, key_position)

),

candidate_keys as (

    select * from comment_keys
    union all
    select * from application_name_keys

),

final as (

    -- several keys: the statement's first one wins
    select distinct on (candidate_keys.audit_entry_id)
        candidate_keys.audit_entry_id,
        candidate_keys.ticket_key,
        candidate_keys.ticket_key_source
    from candidate_keys
    order by
        candidate_keys.audit_entry_id,
        candidate_keys.source_priority,
        candidate_keys.token_position,
        candidate_keys.key_position

)

select * from final
