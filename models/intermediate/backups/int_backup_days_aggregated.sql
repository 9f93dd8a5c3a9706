-- Successful backups per (cluster, day of completion in the reporting time
-- zone, snapshot): BK-01's days. Failed or aborted backups do not count: they
-- are a gap, like a missing one.

with

backups as (

    select * from {{ ref('stg_backups__backups') }}

),

final as (

    select
        backups.cluster,
        {{ local_date('backups.completed_at') }} as backup_day,
        count(*) as successful_backups,
        max(backups.completed_at) as last_completed_at,
        backups.evidence_id
    from backups
    where
        backups.is_success
        and backups.completed_at is not null
    group by
        backups.cluster,
        {{ local_date('backups.completed_at') }},
        backups.evidence_id

)

select * from final
