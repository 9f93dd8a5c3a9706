-- Every role each role holds in the run's quarter-end catalog: its
-- memberships, and its attributes as pseudo-roles (SUPERUSER, CREATEROLE, and
-- LOGIN for a role that can log in). `can_login` says whether the holder can
-- log in: AC-03 and the access list count only those, AC-02 counts every row.

with

memberships as (

    select * from {{ ref('stg_db_catalog__memberships') }}

),

catalog_roles as (

    select * from {{ ref('stg_db_catalog__roles') }}

),

membership_holdings as (

    select
        memberships.cluster,
        memberships.member_role as login_role,
        memberships.granted_role as role,
        'membership' as holding_kind,
        memberships.can_member_login as can_login,
        memberships.run_id,
        memberships.evidence_id,
        memberships.evidence_locator
    from memberships

),

attribute_holdings as (

    -- superusers and CREATEROLE holders are privileged without any membership
    select
        catalog_roles.cluster,
        catalog_roles.role_name as login_role,
        'SUPERUSER' as role,
        'attribute' as holding_kind,
        catalog_roles.can_login,
        catalog_roles.run_id,
        catalog_roles.evidence_id,
        catalog_roles.evidence_locator
    from catalog_roles
    where catalog_roles.is_superuser
    union all
    select
        catalog_roles.cluster,
        catalog_roles.role_name as login_role,
        'CREATEROLE' as role,
        'attribute' as holding_kind,
        catalog_roles.can_login,
        catalog_roles.run_id,
        catalog_roles.evidence_id,
        catalog_roles.evidence_locator
    from catalog_roles
    where catalog_roles.can_create_role
    union all
    select
        catalog_roles.cluster,
        catalog_roles.role_name as login_role,
        'LOGIN' as role,
        'attribute' as holding_kind,
        catalog_roles.can_login,
        catalog_roles.run_id,
        catalog_roles.evidence_id,
        catalog_roles.evidence_locator
    from catalog_roles
    where catalog_roles.can_login

),

final as (

    select * from membership_holdings
    union all
    select * from attribute_holdings

)

select * from final
