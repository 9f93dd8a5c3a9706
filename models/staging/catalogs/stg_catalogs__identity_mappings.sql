-- Login roles that are not their person's user name, and service accounts.
-- Unmapped login roles are their own (lower-cased) identity.

with

identity_map as (

    select * from {{ source('catalogs', 'identity_map') }} as identity_map
    where {{ this_run('identity_map') }}

),

final as (

    select
        btrim(identity_map.login_role) as login_role,
        {{ normalize_identity('identity_map.identity') }} as identity,
        coalesce(lower(nullif(btrim(identity_map.identity_type), '')), 'person')
            as identity_type,
        nullif(btrim(identity_map.approval_ref), '') as approval_ref,
        {{ carry_evidence('identity_map') }}
    from identity_map
    where nullif(btrim(identity_map.login_role), '') is not null

)

select * from final
