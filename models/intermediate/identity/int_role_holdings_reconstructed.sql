-- For each identity deactivated in the quarter: every (cluster, login role,
-- role) it held at its deactivation time. A role counts as held when it is
-- in the quarter-end catalog, when the audit log granted it before the
-- deactivation without revoking it before, or when the audit log revokes it
-- after the deactivation (it must have been held to be revoked).

with

deactivated_identities as (

    select * from {{ ref('int_identities_deactivated') }}

),

identity_mappings as (

    select * from {{ ref('stg_catalogs__identity_mappings') }}

),

memberships as (

    select * from {{ ref('stg_db_catalog__memberships') }}

),

catalog_roles as (

    select * from {{ ref('stg_db_catalog__roles') }}

),

grants as (

    select * from {{ ref('int_role_grants_parsed') }}

),

revocations as (

    select * from {{ ref('int_role_revocations_parsed') }}

),

catalog_holdings as (

    select
        memberships.cluster,
        memberships.member_role as login_role,
        memberships.granted_role as role,
        memberships.evidence_id
    from memberships

    union all

    -- the attributes are roles too: SUPERUSER, CREATEROLE, and LOGIN itself
    select
        catalog_roles.cluster,
        catalog_roles.role_name as login_role,
        role_attribute.role,
        catalog_roles.evidence_id
    from catalog_roles
    cross join
        lateral unnest(array[
            case when catalog_roles.is_superuser then 'SUPERUSER' end,
            case when catalog_roles.can_create_role then 'CREATEROLE' end,
            case when catalog_roles.can_login then 'LOGIN' end
        ]) as role_attribute (role)
    where role_attribute.role is not null

),

seen_login_roles as (

    select
        catalog_holdings.cluster,
        catalog_holdings.login_role
    from catalog_holdings
    union
    select
        grants.cluster,
        grants.grantee
    from grants
    union
    select
        revocations.cluster,
        revocations.login_role
    from revocations

),

login_roles as (

    -- every login role seen anywhere, with the identity it belongs to
    select distinct
        seen.cluster,
        seen.login_role,
        coalesce(identity_mappings.identity, lower(seen.login_role)) as identity
    from seen_login_roles as seen
    left join identity_mappings
        on lower(seen.login_role) = lower(identity_mappings.login_role)

),

deactivated_login_roles as (

    select
        login_roles.cluster,
        login_roles.login_role,
        deactivated_identities.identity,
        deactivated_identities.deactivated_at
    from login_roles
    inner join deactivated_identities
        on login_roles.identity = deactivated_identities.identity

),

held_in_catalog as (

    select
        deactivated_login_roles.identity,
        deactivated_login_roles.cluster,
        deactivated_login_roles.login_role,
        catalog_holdings.role,
        'catalog' as held_because,
        catalog_holdings.evidence_id
    from deactivated_login_roles
    inner join catalog_holdings
        on
            deactivated_login_roles.cluster = catalog_holdings.cluster
            and deactivated_login_roles.login_role = catalog_holdings.login_role

),

held_by_grant as (

    select
        deactivated_login_roles.identity,
        deactivated_login_roles.cluster,
        deactivated_login_roles.login_role,
        grants.granted_role as role,
        'granted' as held_because,
        grants.evidence_id
    from deactivated_login_roles
    inner join grants
        on
            deactivated_login_roles.cluster = grants.cluster
            and deactivated_login_roles.login_role = grants.grantee
    where
        grants.granted_at < deactivated_login_roles.deactivated_at
        and not exists (
            select 1
            from revocations
            where
                revocations.cluster = grants.cluster
                and revocations.login_role = grants.grantee
                and revocations.revoked_role in (grants.granted_role, '*')
                and revocations.revoked_at > grants.granted_at
                and revocations.revoked_at < deactivated_login_roles.deactivated_at
        )

),

revoked_after_deactivation as (

    -- DROP / NOLOGIN / VALID UNTIL revoke every role: known here as LOGIN
    select
        deactivated_login_roles.identity,
        deactivated_login_roles.cluster,
        deactivated_login_roles.login_role,
        case when revocations.revoked_role = '*' then 'LOGIN' else revocations.revoked_role end
            as role,
        'revoked' as held_because,
        revocations.evidence_id
    from deactivated_login_roles
    inner join revocations
        on
            deactivated_login_roles.cluster = revocations.cluster
            and deactivated_login_roles.login_role = revocations.login_role
    where revocations.revoked_at >= deactivated_login_roles.deactivated_at

),

final as (

    select * from held_in_catalog
    union all
    select * from held_by_grant
    union all
    select * from revoked_after_deactivation

)

select * from final
