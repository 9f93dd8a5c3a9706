-- Every role grant the audit log shows, one row per (granted role, grantee)
-- per statement: `GRANT r1, r2 TO u1, u2`, and the SUPERUSER / CREATEROLE
-- attributes given by `ALTER ROLE|USER` or `CREATE ROLE|USER`.

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
        regexp_match(
            role_statements.statement_clean,
            '^grant\s+(.+?)\s+to\s+(.+?)(?:\s+(?:with|granted)\s+.*)?$',
            'i'
        ) as grant_parts
    from role_statements
    -- pgaudit logs the command tag: GRANT ROLE for role grants (older versions: GRANT)
    where role_statements.command in ('GRANT', 'GRANT ROLE')

),

membership_grants as (

    -- `GRANT SELECT ON t TO u` grants a privilege, not a role
    select
        grant_statements.audit_entry_id,
        {{ unquote_identifier("regexp_replace(grantee.name, '^group\s+', '', 'i')") }} as grantee,
        {{ unquote_identifier('granted.name') }} as granted_role,
        'membership' as grant_kind,
        granted.name_position * 100 + grantee.name_position as grant_position
    from grant_statements
    cross join
        lateral regexp_split_to_table(grant_statements.grant_parts[1], '\s*,\s*')
        with ordinality as granted (name, name_position)
    cross join
        lateral regexp_split_to_table(grant_statements.grant_parts[2], '\s*,\s*')
        with ordinality as grantee (name, name_position)
    where
        grant_statements.grant_parts is not null
        and grant_statements.grant_parts[1] !~* '\mon\M'

),

attribute_statements as (

    select
        role_statements.audit_entry_id,
        regexp_match(
            role_statements.statement_clean,
            '^(?:alter|create)\s+(?:role|user)\s+("(?:[^"]|"")+"|[^\s";]+)(.*)$',
            'i'
        ) as attribute_parts
    from role_statements
    where role_statements.command in ('ALTER ROLE', 'CREATE ROLE', 'ALTER USER', 'CREATE USER')

),

attribute_grants as (

    -- NOSUPERUSER / NOCREATEROLE take the attribute away: not grants
    select
        attribute_statements.audit_entry_id,
        {{ unquote_identifier('attribute_statements.attribute_parts[1]') }} as grantee,
        granted_attribute.name as granted_role,
        'attribute' as grant_kind,
        granted_attribute.name_position as grant_position
    from attribute_statements
    cross join
        lateral unnest(array[
            case
                when attribute_statements.attribute_parts[2] ~* '(^|\s)superuser(\s|$)'
                    then 'SUPERUSER'
            end,
            case
                when attribute_statements.attribute_parts[2] ~* '(^|\s)createrole(\s|$)'
                    then 'CREATEROLE'
            end
        ]) with ordinality as granted_attribute (name, name_position)
    where
        attribute_statements.attribute_parts is not null
        and attribute_statements.attribute_parts[2] !~* '^\s*(set|reset|rename|in\s+database)\M'
        and granted_attribute.name is not null

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
                    role_statements.session_key || '|' || role_statements.statement_id::text,
                    role_statements.audit_entry_id::text
                ),
                grants.grantee,
                grants.granted_role
            order by
                role_statements.substatement_id,
                role_statements.logged_at,
                role_statements.session_line_num,
                role_statements.evidence_locator
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
