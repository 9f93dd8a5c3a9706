-- The quarter-end role memberships of each cluster, typed.

with

memberships as (

    select * from {{ source('db_catalog', 'catalog_memberships') }} as memberships
    where {{ this_run('memberships') }}

),

final as (

    select
        memberships.cluster,
        memberships.member as member_role,
        memberships.granted_role,
        {{ to_boolean('memberships.admin_option') }} as has_admin_option,
        {{ to_boolean('memberships.rolsuper') }} as is_member_superuser,
        {{ to_boolean('memberships.rolcanlogin') }} as can_member_login,
        {{ to_boolean('memberships.rolcreaterole') }} as can_member_create_role,
        case
            when nullif(btrim(memberships.rolvaliduntil), '') is null then null
            when btrim(memberships.rolvaliduntil) = 'infinity' then {{ timestamptz_infinity() }}
            else {{ to_utc_timestamp('memberships.rolvaliduntil') }}
        end as member_valid_until,
        memberships.source_name,
        {{ carry_evidence('memberships') }}
    from memberships

)

select * from final
