-- Every revocation the audit log shows: `REVOKE r FROM u` (that role), and
-- `DROP ROLE|USER u`, `ALTER ROLE u NOLOGIN`, `ALTER ROLE u VALID UNTIL '<ts>'`
-- with <ts> at or before the statement (every role of u, LOGIN included:
-- revoked_role = '*'). NOSUPERUSER / NOCREATEROLE revoke that attribute.

with

audit_entries as (

    select * from {{ ref('stg_db_audit__audit_entries') }}

),

role_statements as (

    select
        audit_entries.*,
        {{ strip_sql_comments('audit_entries.statement_text') }} as statement_clean
    from audit_entries
    where audit_entries.audit_class = 'ROLE'

),

revoke_statements as (

    select
        role_statements.audit_entry_id,
        regexp_match(
            role_statements.statement_clean,
            '^revoke\s+((?:admin|inherit|set)\s+option\s+for\s+)?(.+?)\s+from\s+(.+?)'
            || '(?:\s+(?:granted\s+by|cascade|restrict)\M.*)?$',
            'i'
        ) as revoke_parts
    from role_statements
    -- pgaudit logs the command tag: REVOKE ROLE for role revokes (older versions: REVOKE)
    where role_statements.command in ('REVOKE', 'REVOKE ROLE')

),

role_revokes as (

    -- `REVOKE ADMIN OPTION FOR r` leaves the membership: not a revocation;
    -- `REVOKE SELECT ON t` revokes a privilege, not a role
    select
        revoke_statements.audit_entry_id,
        {{ unquote_identifier("regexp_replace(revokee.name, '^group\s+', '', 'i')") }}
            as login_role,
        {{ unquote_identifier('revoked.name') }} as revoked_role,
        'REVOKE' as revocation_kind
    from revoke_statements
    cross join
        lateral regexp_split_to_table(revoke_statements.revoke_parts[2], '\s*,\s*')
            as revoked (name)
    cross join
        lateral regexp_split_to_table(revoke_statements.revoke_parts[3], '\s*,\s*')
            as revokee (name)
    where
        revoke_statements.revoke_parts is not null
        and revoke_statements.revoke_parts[1] is null
        and revoke_statements.revoke_parts[2] !~* '\mon\M'

),

drop_statements as (

    select
        role_statements.audit_entry_id,
        regexp_match(
            role_statements.statement_clean,
            '^drop\s+(?:role|user)\s+(?:if\s+exists\s+)?(.+)$',
            'i'
        ) as drop_parts
    from role_statements
    where role_statements.command in ('DROP ROLE', 'DROP USER')

),

role_drops as (

    select
        drop_statements.audit_entry_id,
        {{ unquote_identifier('dropped.name') }} as login_role,
        '*' as revoked_role,
        'DROP ROLE' as revocation_kind
    from drop_statements
    cross join
        lateral regexp_split_to_table(drop_statements.drop_parts[1], '\s*,\s*')
            as dropped (name)
    where drop_statements.drop_parts is not null

),

alter_statements as (

    select
        role_statements.audit_entry_id,
        role_statements.logged_at,
        regexp_match(
            role_statements.statement_clean,
            '^alter\s+(?:role|user)\s+("(?:[^"]|"")+"|[^\s";]+)(.*)$',
            'i'
        ) as alter_parts
    from role_statements
    where role_statements.command in ('ALTER ROLE', 'ALTER USER')

),

alter_options as (

    select
        alter_statements.audit_entry_id,
        {{ unquote_identifier('alter_statements.alter_parts[1]') }} as login_role,
        alter_statements.alter_parts[2] as options,
        {{ to_utc_timestamp(
            "substring(alter_statements.alter_parts[2]"
            ~ " from '(?i)valid\s+until\s+''([^'']*)''')"
        ) }} as valid_until,
        alter_statements.logged_at
    from alter_statements
    where
        alter_statements.alter_parts is not null
        and alter_statements.alter_parts[2] !~* '^\s*(set|reset|rename|in\s+database)\M'

),

attribute_revokes as (

    select
        alter_options.audit_entry_id,
        alter_options.login_role,
        revoked_attribute.revoked_role,
        revoked_attribute.revocation_kind
    from alter_options
    cross join
        lateral (
            values
            (
                case when alter_options.options ~* '(^|\s)nologin(\s|$)' then '*' end,
                'NOLOGIN'
            ),
            (
                case when alter_options.valid_until <= alter_options.logged_at then '*' end,
                'VALID UNTIL'
            ),
            (
                case when alter_options.options ~* '(^|\s)nosuperuser(\s|$)' then 'SUPERUSER' end,
                'NOSUPERUSER'
            ),
            (
                case when alter_options.options ~* '(^|\s)nocreaterole(\s|$)' then 'CREATEROLE' end,
                'NOCREATEROLE'
            )
        ) as revoked_attribute (revoked_role, revocation_kind)
    where revoked_attribute.revoked_role is not null

),

revocations as (

    select * from role_revokes
    union all
    select * from role_drops
    union all
    select * from attribute_revokes

),

final as (

    select distinct on (
        role_statements.cluster,
        coalesce(
            role_statements.session_key || '|' || role_statements.statement_id::text,
            role_statements.audit_entry_id::text
        ),
        revocations.login_role,
        revocations.revoked_role,
        revocations.revocation_kind
    )
        revocations.audit_entry_id,
        role_statements.cluster,
        revocations.login_role,
        revocations.revoked_role,
        revocations.revocation_kind,
        role_statements.logged_at as revoked_at,
        role_statements.user_name as revoked_by,
        role_statements.statement_text,
        role_statements.run_id,
        role_statements.evidence_id,
        role_statements.evidence_locator
    from revocations
    inner join role_statements
        on revocations.audit_entry_id = role_statements.audit_entry_id
    where revocations.login_role <> ''
    order by
        role_statements.cluster,
        coalesce(
            role_statements.session_key || '|' || role_statements.statement_id::text,
            role_statements.audit_entry_id::text
        ),
        revocations.login_role,
        revocations.revoked_role,
        revocations.revocation_kind,
        role_statements.substatement_id,
        role_statements.logged_at,
        role_statements.evidence_locator

)

select * from final
