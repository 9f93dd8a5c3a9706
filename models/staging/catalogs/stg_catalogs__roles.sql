-- The role catalog: which roles may exist on which clusters, and which are
-- privileged. SUPERUSER and CREATEROLE stand for the role attributes.

with

role_catalog as (

    select * from {{ source('catalogs', 'role_catalog') }} as role_catalog
    where {{ this_run('role_catalog') }}

),

final as (

    select
        btrim(role_catalog.role_name) as role_name,
        coalesce(nullif(btrim(role_catalog.cluster_pattern), ''), '*') as cluster_pattern,
        {{ to_boolean('role_catalog.is_privileged') }} as is_privileged,
        role_catalog.description,
        role_catalog.owner,
        role_catalog.allowed_holders,
        {{ carry_evidence('role_catalog') }}
    from role_catalog
    where nullif(btrim(role_catalog.role_name), '') is not null

)

select * from final
