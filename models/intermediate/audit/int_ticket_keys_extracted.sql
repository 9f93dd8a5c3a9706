-- The ticket key each audit entry names, if any: the first key inside a SQL
-- comment of the statement (`/* CHG-2001 */`, `-- DBA-101`), else the first
-- key in application_name. Keys in string literals or identifiers are data,
-- not references, and are ignored.

{# literals, quoted identifiers and comments; set as a block so that `\n`
   stays the pattern's newline escape. Each alternative is unrolled
   (`'[^']*(?:''[^']*)*'`, not `'(?:[^']|'')*'`: the same matches) so that
   Java's backtracking regex (Spark) does not recurse once per character and
   overflow its stack on a long literal or comment. #}
{% set token_pattern -%}
    '(''[^'']*(?:''''[^'']*)*''|"[^"]*(?:""[^"]*)*"|/\*[^*]*\*+(?:[^*/][^*]*\*+)*/|--[^\n]*)'
{%- endset %}
{% set key_pattern = "'(" ~ (var("ticket_key_pattern") | string | replace("'", "''")) ~ ")'" %}

with

audit_entries as (

    select * from {{ ref('stg_db_audit__audit_entries') }}

),

statement_tokens as (

    -- literals, quoted identifiers and comments, left to right, so that a
    -- `--` inside a literal never opens a comment
    select
        audit_entries.audit_entry_id,
        statement_token.token_text,
        statement_token.token_position
    from audit_entries
    cross join {{ identity_lateral_re_matches(
        'audit_entries.statement_text', token_pattern,
        'statement_token', 'token_text', 'token_position'
    ) }}

),

comment_keys as (

    select
        statement_tokens.audit_entry_id,
        comment_key.ticket_key,
        'statement_comment' as ticket_key_source,
        1 as source_priority,
        statement_tokens.token_position,
        comment_key.key_position
    from statement_tokens
    cross join {{ identity_lateral_re_matches(
        'statement_tokens.token_text', key_pattern,
        'comment_key', 'ticket_key', 'key_position'
    ) }}
    where
        statement_tokens.token_text like '/*%'
        or statement_tokens.token_text like '--%'

),

application_name_keys as (

    select
        audit_entries.audit_entry_id,
        application_key.ticket_key,
        'application_name' as ticket_key_source,
        2 as source_priority,
        0::bigint as token_position,
        application_key.key_position
    from audit_entries
    cross join {{ identity_lateral_re_matches(
        'audit_entries.application_name', key_pattern,
        'application_key', 'ticket_key', 'key_position'
    ) }}

),

candidate_keys as (

    select * from comment_keys
    union all
    select * from application_name_keys

),

ranked_keys as (

    -- several keys: the statement's first one wins
    select
        candidate_keys.*,
        row_number() over (
            partition by candidate_keys.audit_entry_id
            order by
                candidate_keys.source_priority asc,
                candidate_keys.token_position asc,
                candidate_keys.key_position asc
        ) as key_rank
    from candidate_keys

),

final as (

    select
        ranked_keys.audit_entry_id,
        ranked_keys.ticket_key,
        ranked_keys.ticket_key_source
    from ranked_keys
    where ranked_keys.key_rank = 1

)

select * from final
