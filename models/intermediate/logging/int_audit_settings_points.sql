-- The known points of each cluster's audit settings (LG-01): the value of
-- `pgaudit.log` in force from that moment, and whether pgaudit is loaded.
-- A settings capture (pg_settings with the server's now()) and a reload line
-- (`parameter "pgaudit.log" changed to "…"`, or `… removed from configuration
-- file`, which returns it to pgaudit's default `none`) are known points.
-- `ALTER SYSTEM` takes effect only at the next reload, whose line is the known
-- point; it is kept here (point_kind `alter_system`, no value) because it
-- stops a capture's value being carried back across it. With
-- `lg01_restart_resets_settings`, every startup is a point after which the
-- value is unknown (an edited configuration file needs no log line).

with

captures as (

    select * from {{ ref('stg_db_catalog__settings') }}

),

server_events as (

    select * from {{ ref('stg_db_audit__server_events') }}

),

captured as (

    select
        captures.cluster,
        captures.captured_at as known_at,
        'capture' as point_kind,
        true as is_value_known,
        captures.pgaudit_log,
        captures.is_pgaudit_loaded,
        captures.evidence_id,
        captures.evidence_locator
    from captures
    where captures.captured_at is not null

),

logged as (

    select
        server_events.cluster,
        server_events.logged_at as known_at,
        server_events.event_kind as point_kind,
        server_events.event_kind <> 'alter_system' as is_value_known,
        case
            when server_events.event_kind = 'setting_changed'
                then server_events.setting_value
            -- removed from the file: back to pgaudit's default
            when server_events.event_kind = 'setting_removed' then 'none'
        end as pgaudit_log,
        -- the server has the parameter: the library is loaded
        case when server_events.event_kind <> 'alter_system' then true end
            as is_pgaudit_loaded,
        server_events.evidence_id,
        server_events.evidence_locator
    from server_events
    where
        server_events.logged_at is not null
        and server_events.setting_name = 'pgaudit.log'
        and server_events.event_kind in ('setting_changed', 'setting_removed', 'alter_system')

),

restarts as (

    select
        server_events.cluster,
        server_events.logged_at as known_at,
        'restart' as point_kind,
        false as is_value_known,
        cast(null as {{ t_text() }}) as pgaudit_log,
        cast(null as boolean) as is_pgaudit_loaded,
        server_events.evidence_id,
        server_events.evidence_locator
    from server_events
    where
        server_events.event_kind = 'ready'
        and server_events.logged_at is not null
        and {{ 'true' if var('lg01_restart_resets_settings', false) else 'false' }}

),

final as (

    select * from captured
    union all
    select * from logged
    union all
    select * from restarts

)

select * from final
