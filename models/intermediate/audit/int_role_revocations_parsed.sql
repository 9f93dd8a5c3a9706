-- Every revocation the audit log shows: `REVOKE r FROM u` (that role), and
-- `DROP ROLE|USER u`, `ALTER ROLE u NOLOGIN`, `ALTER ROLE u VALID UNTIL '<ts>'`
-- with <ts> at or before the statement (every role of u, LOGIN included:
-- revoked_role = '*'). NOSUPERUSER / NOCREATEROLE revoke that attribute.

{% set revoke_pattern -%}
    '(?i)^revoke\s+((?:admin|inherit|set)\s+option\s+for\s+)?(.+?)\s+from\s+(.+?)(?:\s+(?:granted\s+by|cascade|restrict)\M.*)?$'
{%- endset %}
{% set drop_pattern -%}
    '(?i)^drop\s+(?:role|user)\s+(?:if\s+exists\s+)?(.+)$'
{%- endset %}
{% set alter_pattern -%}
    '(?i)^alter\s+(?:role|user)\s+("(?:[^"]|"")+"|[^\s";]+)(.*)$'
{%- endset %}
{% set valid_until_pattern -%}
    '(?i)valid\s+until\s+''([^'']*)'''
{%- endset %}

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
        {{ re_substr('role_statements.statement_clean', revoke_pattern, 1) }}
            as option_for,
        {{ re_substr('role_statements.statement_clean', revoke_pattern, 2) }}
            as revoked_names,
        {{ re_substr('role_statements.statement_clean', revoke_pattern, 3) }}
            as revokee_names
    from role_statements
    -- pgaudit logs the command tag: REVOKE ROLE for role revokes (older versions: REVOKE)
    where role_statements.command in ('REVOKE', 'REVOKE ROLE')

),

role_revokes as (

    -- `REVOKE ADMIN OPTION FOR r` leaves the membership: not a revocation;
    -- `REVOKE SELECT ON t` revokes a privilege, not a role
    select
        revoke_statements.audit_entry_id,
        {{ unquote_identifier(re_replace('revokee.name', "'^group\s+'", "''", 'i')) }}
            as login_role,
        {{ unquote_identifier('revoked.name') }} as revoked_role,
        'REVOKE' as revocation_kind
    from revoke_statements
    cross join {{ identity_lateral_unnest(
        identity_re_split('revoke_statements.revoked_names', "'\s*,\s*'"),
        'revoked', 'name', 'name_position'
    ) }}
    cross join {{ identity_lateral_unnest(
        identity_re_split('revoke_statements.revokee_names', "'\s*,\s*'"),
        'revokee', 'name', 'name_position'
    ) }}
    where
        revoke_statements.revoked_names is not null
        -- an option clause that did not match is null (PostgreSQL) or '' (Spark)
        and coalesce(revoke_statements.option_for, '') = ''
        and not {{ re_imatch('revoke_statements.revoked_names', "'\mon\M'") }}

),

drop_statements as (

    select
        role_statements.audit_entry_id,
        {{ re_substr('role_statements.statement_clean', drop_pattern, 1) }}
            as dropped_names
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
    cross join {{ identity_lateral_unnest(
        identity_re_split('drop_statements.dropped_names', "'\s*,\s*'"),
        'dropped', 'name', 'name_position'
    ) }}
    where drop_statements.dropped_names is not null

),

alter_statements as (

    select
        role_statements.audit_entry_id,
        role_statements.logged_at,
        {{ re_substr('role_statements.statement_clean', alter_pattern, 1) }}
            as role_name,
        {{ re_substr('role_statements.statement_clean', alter_pattern, 2) }}
            as role_options
    from role_statements
    where role_statements.command in ('ALTER ROLE', 'ALTER USER')

),

alter_options as (

    select
        alter_statements.audit_entry_id,
        {{ unquote_identifier('alter_statements.role_name') }} as login_role,
        alter_statements.role_options as options,
        {{ to_utc_timestamp(
            re_substr('alter_statements.role_options', valid_until_pattern, 1)
        ) }} as valid_until,
        alter_statements.logged_at
    from alter_statements
    where
        alter_statements.role_name is not null
        and not {{ re_imatch(
            'alter_statements.role_options',
            "'^\s*(set|reset|rename|in\s+database)\M'"
        ) }}

),

attribute_revokes as (

    select
        alter_options.audit_entry_id,
        alter_options.login_role,
        '*' as revoked_role,
        'NOLOGIN' as revocation_kind
    from alter_options
    where {{ re_imatch('alter_options.options', "'(^|\s)nologin(\s|$)'") }}
    union all
    select
        alter_options.audit_entry_id,
        alter_options.login_role,
        '*' as revoked_role,
        'VALID UNTIL' as revocation_kind
    from alter_options
    where alter_options.valid_until <= alter_options.logged_at
    union all
    select
        alter_options.audit_entry_id,
        alter_options.login_role,
        'SUPERUSER' as revoked_role,
        'NOSUPERUSER' as revocation_kind
    from alter_options
    where {{ re_imatch('alter_options.options', "'(^|\s)nosuperuser(\s|$)'") }}
    union all
    select
        alter_options.audit_entry_id,
        alter_options.login_role,
        'CREATEROLE' as revoked_role,
        'NOCREATEROLE' as revocation_kind
    from alter_options
    where {{ re_imatch('alter_options.options', "'(^|\s)nocreaterole(\s|$)'") }}

),

revocations as (

    select * from role_revokes
    union all
    select * from role_drops
    union all
    select * from attribute_revokes

),

ranked as (

    -- one statement can yield several audit entries (substatements,
    -- log_relation): one revocation per statement
    select
        revocations.*,
        role_statements.cluster,
        role_statements.logged_at,
        role_statements.user_name,
        role_statements.statement_text,
        role_statements.run_id,
        role_statements.evidence_id,
        role_statements.evidence_locator,
        row_number() over (
            partition by
                role_statements.cluster,
                coalesce(
                    role_statements.session_key || '|'
                    || cast(role_statements.statement_id as {{ t_text() }}),
                    cast(role_statements.audit_entry_id as {{ t_text() }})
                ),
                revocations.login_role,
                revocations.revoked_role,
                revocations.revocation_kind
            order by
                role_statements.substatement_id asc nulls last,
                role_statements.logged_at asc nulls last,
                role_statements.evidence_locator asc nulls last
        ) as entry_rank
    from revocations
    inner join role_statements
        on revocations.audit_entry_id = role_statements.audit_entry_id
    where revocations.login_role <> ''

),

final as (

    select
        ranked.audit_entry_id,
        ranked.cluster,
        ranked.login_role,
        ranked.revoked_role,
        ranked.revocation_kind,
        ranked.logged_at as revoked_at,
        ranked.user_name as revoked_by,
        ranked.statement_text,
        ranked.run_id,
        ranked.evidence_id,
        ranked.evidence_locator
    from ranked
    where ranked.entry_rank = 1

)

select * from final
