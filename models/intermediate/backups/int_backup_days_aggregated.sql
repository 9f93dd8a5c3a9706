-- Successful backups per (cluster, UTC day of completion, snapshot). Failed
-- or aborted backups do not count: they are a gap, like a missing one.

with

backups as (

    select * from {{ ref('stg_backups__backups') }}

),

final as (

    select
        backups.cluster,
        (backups.completed_at at time zone 'UTC')::date as backup_day,
        count(*) as successful_backups,
        max(backups.completed_at) as last_completed_at,
        backups.evidence_id
    from backups
    where
        backups.is_success
        and backups.completed_at is not null
    group by
        backups.cluster,
        (backups.completed_at at time zone 'UTC')::date,
        backups.evidence_id

)

select * from final
