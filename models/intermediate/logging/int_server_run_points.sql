-- The moments a cluster's own server log says its running state changed,
-- one row each (LG-01's run timeline): `ready` starts a run; a clean
-- shutdown (`database system is shut down`) and a crash (`terminating any
-- other active server processes`) end one; a startup's `database system was
-- shut down at T` ends one at T, also when the shutdown line itself is not
-- in the captured logs. A crash that leaves no line (`database system was
-- interrupted` at the next startup) ends nothing: the stretch up to the next
-- startup counts as running, since nothing shows it was not.

with

server_events as (

    select * from {{ ref('stg_db_audit__server_events') }}

),

logged as (

    select
        server_events.cluster,
        server_events.logged_at as changed_at,
        case
            when server_events.event_kind = 'ready' then 'up'
            else 'down'
        end as run_state,
        server_events.event_kind as point_kind,
        server_events.evidence_id,
        server_events.evidence_locator
    from server_events
    where
        server_events.event_kind in ('ready', 'shut_down', 'terminating_others')
        and server_events.logged_at is not null

),

named_shutdowns as (

    -- the startup line names the last shutdown: the run ended then
    select
        server_events.cluster,
        {{ to_utc_timestamp('server_events.named_time_text') }} as changed_at,
        'down' as run_state,
        'named_shutdown' as point_kind,
        server_events.evidence_id,
        server_events.evidence_locator
    from server_events
    where
        server_events.event_kind = 'was_shut_down_at'
        and server_events.named_time_text is not null

),

final as (

    select * from logged
    union all
    select * from named_shutdowns

)

select * from final
