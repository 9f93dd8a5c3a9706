-- Every role of each cluster at quarter end with its attributes: superusers
-- and CREATEROLE holders are privileged without any membership.

with

roles as (

    select * from {{ source('db_catalog', 'catalog_roles') }} as roles
    where {{ this_run('roles') }}

),

final as (

    select
        roles.cluster,
        roles.rolname as role_name,
        {{ to_boolean('roles.rolsuper') }} as is_superuser,
        {{ to_boolean('roles.rolcreaterole') }} as can_create_role,
        {{ to_boolean('roles.rolcanlogin') }} as can_login,
        case
            when nullif(btrim(roles.rolvaliduntil), '') is null then null
            when btrim(roles.rolvaliduntil) = 'infinity' then {{ timestamptz_infinity() }}
            else {{ to_utc_timestamp('roles.rolvaliduntil') }}
        end as valid_until,
        roles.source_name,
        {{ carry_evidence('roles') }}
    from roles

)

select * from final
