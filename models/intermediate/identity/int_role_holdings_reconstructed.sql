-- For each identity deactivated in the quarter: every (cluster, login role,
-- role) it held at its deactivation time. A role counts as held when it is
-- in the quarter-end catalog, when the audit log says it was held just
-- before the deactivation (the last role event before it is a grant: see
-- int_role_holding_periods_replayed), or when the audit log revokes it after
-- the deactivation (it must have been held to be revoked).

with

deactivated_identities as (

    select * from {{ ref('int_identities_deactivated') }}

),

identity_mappings as (

    select * from {{ ref('stg_catalogs__identity_mappings') }}

),

catalog_holdings as (

    select * from {{ ref('int_role_holdings_catalogued') }}

),

role_events as (

    select * from {{ ref('int_role_events_unioned') }}

),

holding_periods as (

    select * from {{ ref('int_role_holding_periods_replayed') }}

),

seen_login_roles as (

    select
        catalog_holdings.cluster,
        catalog_holdings.login_role
    from catalog_holdings
    union
    select
        role_events.cluster,
        role_events.login_role
    from role_events

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

    -- held just before the deactivation by the audit log's account; every
    -- grant since the last revocation is evidence of it
    select
        deactivated_login_roles.identity,
        deactivated_login_roles.cluster,
        deactivated_login_roles.login_role,
        streak_periods.role,
        'granted' as held_because,
        streak_periods.event_evidence_id as evidence_id
    from deactivated_login_roles
    inner join holding_periods as deciding_periods
        on
            deactivated_login_roles.cluster = deciding_periods.cluster
            and deactivated_login_roles.login_role = deciding_periods.login_role
    inner join holding_periods as streak_periods
        on
            deciding_periods.cluster = streak_periods.cluster
            and deciding_periods.login_role = streak_periods.login_role
            and deciding_periods.role = streak_periods.role
            and deciding_periods.held_since_at = streak_periods.held_since_at
    where
        deciding_periods.decided_by = 'grant'
        and deciding_periods.valid_from < deactivated_login_roles.deactivated_at
        and (
            deciding_periods.valid_to is null
            or deciding_periods.valid_to >= deactivated_login_roles.deactivated_at
        )
        and streak_periods.decided_by = 'grant'
        and streak_periods.valid_from < deactivated_login_roles.deactivated_at

),

revoked_after_deactivation as (

    -- a revocation of every role is known here as the revocation of LOGIN
    select
        deactivated_login_roles.identity,
        deactivated_login_roles.cluster,
        deactivated_login_roles.login_role,
        role_events.role,
        'revoked' as held_because,
        role_events.evidence_id
    from deactivated_login_roles
    inner join role_events
        on
            deactivated_login_roles.cluster = role_events.cluster
            and deactivated_login_roles.login_role = role_events.login_role
    where
        role_events.event_kind = 'revoke'
        and role_events.event_at >= deactivated_login_roles.deactivated_at

),

final as (

    select * from held_in_catalog
    union all
    select * from held_by_grant
    union all
    select * from revoked_after_deactivation

)

select * from final
