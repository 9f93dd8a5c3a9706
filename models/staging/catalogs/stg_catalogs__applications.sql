-- Applications and the clusters they run on: SOX scope and backup policy.

with

applications as (

    select * from {{ source('catalogs', 'applications') }} as applications
    where {{ this_run('applications') }}

),

final as (

    select
        btrim(applications.application) as application,
        btrim(applications.cluster) as cluster,
        {{ to_boolean('applications.sox_in_scope') }} as is_sox_in_scope,
        lower(nullif(btrim(applications.backup_policy), '')) as backup_policy,
        {{ carry_evidence('applications') }}
    from applications
    where nullif(btrim(applications.cluster), '') is not null

)

select * from final
