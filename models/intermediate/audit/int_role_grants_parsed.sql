-- Every role grant the audit log shows, one row per (granted role, grantee)
-- per statement: `GRANT r1, r2 TO u1, u2`, and the SUPERUSER / CREATEROLE
-- attributes given by `ALTER ROLE|USER` or `CREATE ROLE|USER`.

{% set grant_pattern -%}
    '(?i)^grant\s+(.+?)\s+to\s+(.+?)(?:\s+(?:with|granted)\s+.*)?$'
{%- endset %}
{% set attribute_pattern -%}
    '(?i)^(?:alter|create)\s+(?:role|user)\s+("(?:[^"]|"")+"|[^\s";]+)(.*)$'
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

grant_statements as (

    select
        role_statements.*,
        {{ re_substr('role_statements.statement_clean', grant_pattern, 1) }}
            as granted_names,
        {{ re_substr('role_statements.statement_clean', grant_pattern, 2) }}
            as grantee_names
    from role_statements
    -- pgaudit logs the command tag: GRANT ROLE for role grants (older versions: GRANT)
    where role_statements.command in ('GRANT', 'GRANT ROLE')

),

membership_grants as (

    -- `GRANT SELECT ON t TO u` grants a privilege, not a role
    select
        grant_statements.audit_entry_id,
        {{ unquote_identifier(re_replace('grantee.name', "'^group\s+'", "''", 'i')) }} as grantee,
        {{ unquote_identifier('granted.name') }} as granted_role,
        'membership' as grant_kind,
        granted.name_position * 100 + grantee.name_position as grant_position
    from grant_statements
    cross join {{ identity_lateral_unnest(
        identity_re_split('grant_statements.granted_names', "'\s*,\s*'"),
        'granted', 'name', 'name_position'
    ) }}
    cross join {{ identity_lateral_unnest(
        identity_re_split('grant_statements.grantee_names', "'\s*,\s*'"),
        'grantee', 'name', 'name_position'
    ) }}
    where
        grant_statements.granted_names is not null
        and not {{ re_imatch('grant_statements.granted_names', "'\mon\M'") }}

),

attribute_statements as (

    select
        role_statements.audit_entry_id,
        {{ re_substr('role_statements.statement_clean', attribute_pattern, 1) }}
            as role_name,
        {{ re_substr('role_statements.statement_clean', attribute_pattern, 2) }}
            as role_options
    from role_statements
    where role_statements.command in ('ALTER ROLE', 'CREATE ROLE', 'ALTER USER', 'CREATE USER')

),

attribute_options as (

    select attribute_statements.*
    from attribute_statements
    where
        attribute_statements.role_name is not null
        and not {{ re_imatch(
            'attribute_statements.role_options',
            "'^\s*(set|reset|rename|in\s+database)\M'"
        ) }}

),

attribute_grants as (

    -- NOSUPERUSER / NOCREATEROLE take the attribute away: not grants
    select
        attribute_options.audit_entry_id,
        {{ unquote_identifier('attribute_options.role_name') }} as grantee,
        'SUPERUSER' as granted_role,
        'attribute' as grant_kind,
        1 as grant_position
    from attribute_options
    where {{ re_imatch('attribute_options.role_options', "'(^|\s)superuser(\s|$)'") }}
    union all
    select
        attribute_options.audit_entry_id,
        {{ unquote_identifier('attribute_options.role_name') }} as grantee,
        'CREATEROLE' as granted_role,
        'attribute' as grant_kind,
        2 as grant_position
    from attribute_options
    where {{ re_imatch('attribute_options.role_options', "'(^|\s)createrole(\s|$)'") }}

),

grants as (

    select * from membership_grants
    union all
    select * from attribute_grants

),

deduplicated as (

    -- one statement can yield several audit entries (substatements,
    -- log_relation): one grant per statement
    select
        grants.*,
        role_statements.cluster,
        role_statements.session_key,
        role_statements.statement_id,
        role_statements.logged_at,
        role_statements.user_name,
        role_statements.application_name,
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
                grants.grantee,
                grants.granted_role
            order by
                role_statements.substatement_id asc nulls last,
                role_statements.logged_at asc nulls last,
                role_statements.session_line_num asc nulls last,
                role_statements.evidence_locator asc nulls last
        ) as entry_rank
    from grants
    inner join role_statements
        on grants.audit_entry_id = role_statements.audit_entry_id
    where grants.grantee <> '' and grants.granted_role <> ''

),

final as (

    select
        deduplicated.audit_entry_id,
        deduplicated.cluster,
        deduplicated.grantee,
        deduplicated.granted_role,
        deduplicated.grant_kind,
        deduplicated.logged_at as granted_at,
        deduplicated.user_name as granted_by,
        deduplicated.session_key,
        deduplicated.statement_id,
        deduplicated.application_name,
        deduplicated.statement_text,
        deduplicated.run_id,
        deduplicated.evidence_id,
        deduplicated.evidence_locator
    from deduplicated
    where deduplicated.entry_rank = 1

)

select * from final
