-- Each in-scope cluster's quarter cut into segments (LG-01): a new segment
-- starts at every local midnight of the reporting time zone, every change of
-- running state (int_server_run_points) and every known point of the audit
-- settings (int_audit_settings_points), so that within a segment the cluster
-- is either running or down and one settings value is in force.
--
-- Rules (docs/controls.md, LG-01):
-- * before a cluster's first run point it counts as running (nothing shows
--   it was down);
-- * a settings value holds forward from its known point to the next one;
-- * before the first known point, a capture's value is carried back only when
--   that first point is a capture and no ALTER SYSTEM of pgaudit.log lies
--   before it (with lg01_restart_resets_settings, a restart is a known point
--   of an unknown value, so it stops the carry too); otherwise the value is
--   unknown;
-- * audit_state: `unknown`, `not_loaded`, `off` (pgaudit.log lacks role or
--   ddl) or `on`.
-- Portable SQL: window functions and plain joins, no range types.

with

scoped_clusters as (

    select * from {{ ref('int_clusters_scoped') }}

),

run_points as (

    select * from {{ ref('int_server_run_points') }}

),

settings_points as (

    select * from {{ ref('int_audit_settings_points') }}

),

quarter_days as (

    {{ quarter_days('log_day') }}

),

settings_ranked as (

    select
        settings_points.*,
        row_number() over (
            partition by settings_points.cluster
            order by
                settings_points.known_at nulls last,
                settings_points.point_kind nulls last,
                settings_points.evidence_locator nulls last
        ) as point_number
    from settings_points
    where settings_points.point_kind <> 'alter_system'

),

first_alterations as (

    select
        settings_points.cluster,
        min(settings_points.known_at) as first_altered_at
    from settings_points
    where settings_points.point_kind = 'alter_system'
    group by settings_points.cluster

),

first_settings as (

    -- each cluster's first known point, and whether an ALTER SYSTEM precedes it
    select
        settings_ranked.cluster,
        settings_ranked.known_at,
        settings_ranked.point_kind,
        settings_ranked.pgaudit_log,
        settings_ranked.is_pgaudit_loaded,
        settings_ranked.evidence_id,
        coalesce(first_alterations.first_altered_at <= settings_ranked.known_at, false)
            as is_altered_before
    from settings_ranked
    left join first_alterations
        on settings_ranked.cluster = first_alterations.cluster
    where settings_ranked.point_number = 1

),

day_boundaries as (

    select
        scoped_clusters.cluster,
        {{ local_day_start('quarter_days.log_day') }} as boundary_at,
        0 as boundary_order,
        'day' as boundary_kind,
        cast(null as {{ t_text() }}) as run_state,
        cast(null as {{ t_text() }}) as point_kind,
        cast(null as boolean) as is_value_known,
        cast(null as {{ t_text() }}) as pgaudit_log,
        cast(null as boolean) as is_pgaudit_loaded,
        cast(null as {{ t_uuid() }}) as evidence_id,
        cast(null as {{ t_text() }}) as evidence_locator
    from scoped_clusters
    cross join quarter_days

),

end_boundaries as (

    select
        scoped_clusters.cluster,
        {{ quarter_end_at() }} as boundary_at,
        0 as boundary_order,
        'end' as boundary_kind,
        cast(null as {{ t_text() }}) as run_state,
        cast(null as {{ t_text() }}) as point_kind,
        cast(null as boolean) as is_value_known,
        cast(null as {{ t_text() }}) as pgaudit_log,
        cast(null as boolean) as is_pgaudit_loaded,
        cast(null as {{ t_uuid() }}) as evidence_id,
        cast(null as {{ t_text() }}) as evidence_locator
    from scoped_clusters

),

run_boundaries as (

    select
        run_points.cluster,
        run_points.changed_at as boundary_at,
        1 as boundary_order,
        'run' as boundary_kind,
        run_points.run_state,
        run_points.point_kind,
        cast(null as boolean) as is_value_known,
        cast(null as {{ t_text() }}) as pgaudit_log,
        cast(null as boolean) as is_pgaudit_loaded,
        run_points.evidence_id,
        run_points.evidence_locator
    from run_points
    inner join scoped_clusters
        on run_points.cluster = scoped_clusters.cluster
    where run_points.changed_at is not null

),

settings_boundaries as (

    select
        settings_points.cluster,
        settings_points.known_at as boundary_at,
        2 as boundary_order,
        'settings' as boundary_kind,
        cast(null as {{ t_text() }}) as run_state,
        settings_points.point_kind,
        settings_points.is_value_known,
        settings_points.pgaudit_log,
        settings_points.is_pgaudit_loaded,
        settings_points.evidence_id,
        settings_points.evidence_locator
    from settings_points
    inner join scoped_clusters
        on settings_points.cluster = scoped_clusters.cluster
    where
        settings_points.point_kind <> 'alter_system'
        and settings_points.known_at is not null

),

boundaries as (

    select * from day_boundaries
    union all
    select * from end_boundaries
    union all
    select * from run_boundaries
    union all
    select * from settings_boundaries

),

ordered as (

    select
        boundaries.*,
        row_number() over (
            partition by boundaries.cluster
            order by
                boundaries.boundary_at nulls last,
                boundaries.boundary_order,
                boundaries.run_state nulls last,
                boundaries.point_kind nulls last,
                boundaries.evidence_locator nulls last
        ) as boundary_number
    from boundaries

),

numbered as (

    select
        ordered.*,
        lead(ordered.boundary_at) over (
            partition by ordered.cluster order by ordered.boundary_number
        ) as segment_end,
        -- the last run / settings point at or before this boundary
        max(case when ordered.boundary_kind = 'run' then ordered.boundary_number end) over (
            partition by ordered.cluster order by ordered.boundary_number
            rows between unbounded preceding and current row
        ) as run_point_number,
        max(case when ordered.boundary_kind = 'settings' then ordered.boundary_number end) over (
            partition by ordered.cluster order by ordered.boundary_number
            rows between unbounded preceding and current row
        ) as settings_point_number
    from ordered

),

segments as (

    select
        numbered.cluster,
        numbered.boundary_at as segment_start,
        numbered.segment_end,
        coalesce(run_point.run_state, 'up') = 'up' as is_running,
        case
            when settings_point.boundary_number is not null then settings_point.is_value_known
            else first_settings.point_kind = 'capture' and not first_settings.is_altered_before
        end as is_value_known,
        case
            when settings_point.boundary_number is not null then settings_point.pgaudit_log
            when first_settings.point_kind = 'capture' and not first_settings.is_altered_before
                then first_settings.pgaudit_log
        end as pgaudit_log,
        case
            when settings_point.boundary_number is not null then settings_point.is_pgaudit_loaded
            when first_settings.point_kind = 'capture' and not first_settings.is_altered_before
                then first_settings.is_pgaudit_loaded
        end as is_pgaudit_loaded,
        case
            when settings_point.boundary_number is not null
                then
                    case settings_point.point_kind
                        when 'capture' then 'the capture of '
                        when 'setting_changed' then 'the reload line of '
                        when 'setting_removed' then 'the removal line of '
                        when 'restart' then 'unknown after the restart of '
                    end || {{ utc_text('settings_point.boundary_at') }}
            when first_settings.point_kind = 'capture' and not first_settings.is_altered_before
                then
                    'carried back from the capture of '
                    || {{ utc_text('first_settings.known_at') }}
            when first_settings.point_kind is not null
                then
                    'unknown before the first known point, '
                    || {{ utc_text('first_settings.known_at') }}
            else 'unknown: no capture or change line'
        end as settings_basis,
        case
            when settings_point.boundary_number is not null then settings_point.evidence_id
            when first_settings.point_kind = 'capture' and not first_settings.is_altered_before
                then first_settings.evidence_id
        end as settings_evidence_id
    from numbered
    left join numbered as run_point
        on
            numbered.cluster = run_point.cluster
            and numbered.run_point_number = run_point.boundary_number
    left join numbered as settings_point
        on
            numbered.cluster = settings_point.cluster
            and numbered.settings_point_number = settings_point.boundary_number
    left join first_settings
        on numbered.cluster = first_settings.cluster
    where
        numbered.segment_end > numbered.boundary_at
        and numbered.boundary_at >= {{ quarter_start_at() }}
        and numbered.boundary_at < {{ quarter_end_at() }}

),

final as (

    select
        segments.cluster,
        {{ local_date('segments.segment_start') }} as log_day,
        segments.segment_start,
        segments.segment_end,
        segments.is_running,
        case
            when not coalesce(segments.is_value_known, false) then 'unknown'
            when not coalesce(segments.is_pgaudit_loaded, false) then 'not_loaded'
            when {{ pgaudit_logs_role_and_ddl('segments.pgaudit_log') }} then 'on'
            else 'off'
        end as audit_state,
        segments.pgaudit_log,
        segments.settings_basis,
        segments.settings_evidence_id
    from segments

)

select * from final
