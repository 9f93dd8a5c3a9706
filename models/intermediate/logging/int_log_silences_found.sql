-- Stretches in which a cluster's log says nothing for longer than the policy's
-- silence limit (var `lg01_silence_limit_hours`, off by default) although no
-- run point lies between the two records: the server ran on, so its log
-- should have gone on too (LG-01's LOG_GAP). Empty when no limit is set.

with

log_records as (

    select * from {{ ref('stg_db_audit__log_records') }}

),

run_points as (

    select * from {{ ref('int_server_run_points') }}

),

sequenced as (

    select
        log_records.cluster,
        log_records.logged_at,
        log_records.evidence_id,
        -- records of one instant: the first by evidence id follows the silence
        lag(log_records.logged_at) over (
            partition by log_records.cluster
            order by log_records.logged_at, log_records.evidence_id nulls last
        ) as previous_at
    from log_records
    where log_records.logged_at is not null

),

silences as (

    select
        sequenced.cluster,
        sequenced.previous_at as silent_from,
        sequenced.logged_at as silent_to,
        sequenced.evidence_id
    from sequenced
    where
        sequenced.previous_at is not null
        {%- set limit = var('lg01_silence_limit_hours', none) %}
        and {{ 'false' if limit is none else
            "sequenced.logged_at - sequenced.previous_at > "
            ~ interval_hours(limit | float) }}

),

final as (

    select
        silences.cluster,
        silences.silent_from,
        silences.silent_to,
        silences.evidence_id
    from silences
    where not exists (
        select 1
        from run_points
        where
            run_points.cluster = silences.cluster
            and run_points.changed_at > silences.silent_from
            and run_points.changed_at < silences.silent_to
    )

)

select * from final
