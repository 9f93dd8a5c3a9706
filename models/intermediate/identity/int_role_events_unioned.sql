-- Every grant and revocation in the audit log as one stream of role events
-- on (cluster, login role, role). A revocation that takes every role of the
-- login role (DROP ROLE, NOLOGIN, VALID UNTIL in the past) is the revocation
-- of the pseudo-role LOGIN, flagged `is_every_role`: it ends every other role
-- of the login role too.

with

grants as (

    select * from {{ ref('int_role_grants_parsed') }}

),

revocations as (

    select * from {{ ref('int_role_revocations_parsed') }}

),

grant_events as (

    select
        grants.cluster,
        grants.grantee as login_role,
        grants.granted_role as role,
        'grant' as event_kind,
        grants.grant_kind as event_detail,
        false as is_every_role,
        grants.granted_at as event_at,
        grants.granted_by as event_by,
        grants.statement_text,
        grants.run_id,
        grants.evidence_id,
        grants.evidence_locator
    from grants

),

revocation_events as (

    select
        revocations.cluster,
        revocations.login_role,
        case
            when revocations.revoked_role = '*' then 'LOGIN'
            else revocations.revoked_role
        end as role,
        'revoke' as event_kind,
        revocations.revocation_kind as event_detail,
        revocations.revoked_role = '*' as is_every_role,
        revocations.revoked_at as event_at,
        revocations.revoked_by as event_by,
        revocations.statement_text,
        revocations.run_id,
        revocations.evidence_id,
        revocations.evidence_locator
    from revocations

),

final as (

    select * from grant_events
    union all
    select * from revocation_events

)

select * from final
