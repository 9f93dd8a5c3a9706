-- LG-01 Audit logging complete and enabled.
-- Question: for every moment of the quarter when an in-scope cluster was
-- running, was pgaudit logging the ROLE and DDL classes, and do we hold the
-- log that shows it? One item per (in-scope cluster, local day of the
-- reporting time zone). The cluster's timeline (int_cluster_timeline_segmented)
-- says when it ran and which settings were in force; the log files' spans
-- (int_log_files_spanned) say what the captured logs cover; backups, settings
-- captures and startup lines naming a shutdown prove the cluster ran.
-- A day down throughout has no running moment: it passes whatever the
-- settings, unless something proves the cluster ran inside the down period.

with

scoped_clusters as (

    select * from {{ ref('int_clusters_scoped') }}

),

segments as (

    select * from {{ ref('int_cluster_timeline_segmented') }}

),

log_files as (

    select * from {{ ref('int_log_files_spanned') }}

),

backups as (

    select * from {{ ref('stg_backups__backups') }}

),

server_events as (

    select * from {{ ref('stg_db_audit__server_events') }}

),

settings_captures as (

    select * from {{ ref('stg_db_catalog__settings') }}

),

silences as (

    select * from {{ ref('int_log_silences_found') }}

),

quarter_days as (

    {{ quarter_days('log_day') }}

),

population as (

    select
        scoped_clusters.cluster
        || '|' || {{ mart_date_text('quarter_days.log_day') }} as item_key,
        scoped_clusters.cluster,
        quarter_days.log_day,
        {{ local_day_start('quarter_days.log_day') }} as day_start,
        {{ local_day_start('quarter_days.log_day + 1') }} as day_end,
        scoped_clusters.evidence_id,
        scoped_clusters.evidence_locator
    from scoped_clusters
    cross join quarter_days

),

islands as (

    -- consecutive segments of a day with the same running state (run_island)
    -- and the same running state and audit state (state_island)
    select
        segments.*,
        row_number() over (
            partition by segments.cluster, segments.log_day
            order by segments.segment_start nulls last
        ) - row_number() over (
            partition by segments.cluster, segments.log_day, segments.is_running
            order by segments.segment_start nulls last
        ) as run_island,
        row_number() over (
            partition by segments.cluster, segments.log_day
            order by segments.segment_start nulls last
        ) - row_number() over (
            partition by
                segments.cluster, segments.log_day, segments.is_running,
                segments.audit_state
            order by segments.segment_start nulls last
        ) as state_island
    from segments

),

run_period_bounds as (

    select
        islands.cluster,
        islands.log_day,
        min(islands.segment_start) as period_start,
        max(islands.segment_end) as period_end
    from islands
    where islands.is_running
    group by islands.cluster, islands.log_day, islands.run_island

),

running_periods as (

    select
        run_period_bounds.cluster,
        run_period_bounds.log_day,
        {{ mart_string_agg(
            utc_text('run_period_bounds.period_start')
            ~ " || '/' || " ~ utc_text('run_period_bounds.period_end'),
            "', '", ['run_period_bounds.period_start']
        ) }} as running_periods
    from run_period_bounds
    group by run_period_bounds.cluster, run_period_bounds.log_day

),

audit_period_bounds as (

    -- running stretches whose settings were not "pgaudit logs role and ddl"
    select
        islands.cluster,
        islands.log_day,
        islands.audit_state,
        min(islands.segment_start) as period_start,
        max(islands.segment_end) as period_end
    from islands
    where islands.is_running and islands.audit_state <> 'on'
    group by islands.cluster, islands.log_day, islands.audit_state, islands.state_island

),

audit_periods as (

    select
        audit_period_bounds.cluster,
        audit_period_bounds.log_day,
        {{ mart_string_agg(
            "audit_period_bounds.audit_state || ' ' || "
            ~ utc_text('audit_period_bounds.period_start')
            ~ " || '/' || " ~ utc_text('audit_period_bounds.period_end'),
            "', '", ['audit_period_bounds.period_start']
        ) }} as audit_off_periods,
        bool_or(audit_period_bounds.audit_state = 'off') as has_audit_off,
        bool_or(audit_period_bounds.audit_state = 'not_loaded') as has_not_loaded,
        bool_or(audit_period_bounds.audit_state = 'unknown') as has_unknown_settings
    from audit_period_bounds
    group by audit_period_bounds.cluster, audit_period_bounds.log_day

),

settings_basis as (

    select
        segments.cluster,
        segments.log_day,
        {{ mart_distinct_string_agg('segments.settings_basis', "'; '") }} as settings_basis,
        {{ mart_distinct_array_agg(
            'segments.settings_evidence_id',
            where='segments.settings_evidence_id is not null'
        ) }} as settings_evidence_ids
    from segments
    group by segments.cluster, segments.log_day

),

session_sets as (

    -- a session-level SET of pgaudit.log affects that session only: a value
    -- without role and ddl is AUDIT_DISABLED on its day, not an off period
    select
        population.item_key,
        {{ mart_string_agg(
            "'session ' || coalesce(server_events.session_id, server_events.process_id, '?')"
            ~ " || ' SET pgaudit.log at ' || " ~ utc_text('server_events.logged_at'),
            "', '", ['server_events.logged_at']
        ) }} as session_settings
    from population
    inner join server_events
        on
            population.cluster = server_events.cluster
            and population.day_start <= server_events.logged_at
            and population.day_end > server_events.logged_at
    where
        server_events.event_kind = 'session_set'
        and not coalesce({{ pgaudit_logs_role_and_ddl(re_substr(
            'lower(server_events.message)',
            "'pgaudit\\.log\"?\\s*(?:=|\\sto\\s)\\s*''?([a-z, -]*)'",
            1
        )) }}, false)
    group by population.item_key

),

restarts as (

    select
        population.item_key,
        {{ mart_string_agg(
            utc_text('server_events.logged_at'), "', '", ['server_events.logged_at']
        ) }} as unverified_restarts
    from population
    inner join server_events
        on
            population.cluster = server_events.cluster
            and population.day_start <= server_events.logged_at
            and population.day_end > server_events.logged_at
    where server_events.event_kind = 'ready'
    group by population.item_key

),

day_files as (

    -- the captured log files covering the day, and missing files of the sequence
    select
        population.item_key,
        {{ mart_distinct_string_agg(
            'log_files.object_name', "', '", where="log_files.span_kind = 'file'"
        ) }} as log_files,
        {{ mart_distinct_array_agg(
            'log_files.evidence_id', where="log_files.span_kind = 'file'"
        ) }} as log_evidence_ids,
        min(log_files.first_record_at) as first_record_at,
        max(log_files.last_record_at) as last_record_at,
        bool_or(log_files.span_kind = 'missing') as has_missing_file,
        {{ mart_distinct_string_agg(
            'log_files.file_name', "', '", where="log_files.span_kind = 'missing'"
        ) }} as missing_files
    from population
    inner join log_files
        on
            population.cluster = log_files.cluster
            and population.day_end > log_files.span_from
            and population.day_start < log_files.span_to
    group by population.item_key

),

day_silences as (

    -- with a silence limit: the log fell silent within one server run
    select
        population.item_key,
        {{ mart_string_agg(
            utc_text('silences.silent_from') ~ " || '/' || " ~ utc_text('silences.silent_to'),
            "', '", ['silences.silent_from']
        ) }} as silent_periods,
        {{ mart_distinct_array_agg('silences.evidence_id') }} as silence_evidence_ids
    from population
    inner join silences
        on
            population.cluster = silences.cluster
            and population.day_end > silences.silent_from
            and population.day_start < silences.silent_to
    group by population.item_key

),

running_proofs as (

    -- moments the cluster provably ran: a completed backup, a settings capture,
    -- a startup line naming when the server was last shut down
    select
        backups.cluster,
        backups.completed_at as proven_at,
        'backup completed ' || {{ utc_text('backups.completed_at') }} as proof,
        backups.evidence_id
    from backups
    where backups.is_success and backups.completed_at is not null

    union all

    select
        settings_captures.cluster,
        settings_captures.captured_at as proven_at,
        'settings captured ' || {{ utc_text('settings_captures.captured_at') }} as proof,
        settings_captures.evidence_id
    from settings_captures
    where settings_captures.captured_at is not null

    union all

    select
        server_events.cluster,
        {{ to_utc_timestamp('server_events.named_time_text') }} as proven_at,
        'startup says shut down at ' || server_events.named_time_text as proof,
        server_events.evidence_id
    from server_events
    where
        server_events.event_kind = 'was_shut_down_at'
        and server_events.named_time_text is not null

),

proofs_judged as (

    select
        population.item_key,
        running_proofs.proof,
        running_proofs.evidence_id,
        -- inside a period the logs call down, or no captured file covers it
        exists (
            select 1 from segments
            where
                segments.cluster = running_proofs.cluster
                and not segments.is_running
                and segments.segment_start < running_proofs.proven_at
                and running_proofs.proven_at < segments.segment_end
        )
        or not exists (
            select 1 from log_files
            where
                log_files.cluster = running_proofs.cluster
                and log_files.span_kind = 'file'
                and log_files.span_from <= running_proofs.proven_at
                and running_proofs.proven_at <= log_files.span_to
        ) as is_unlogged
    from population
    inner join running_proofs
        on
            population.cluster = running_proofs.cluster
            and population.day_start <= running_proofs.proven_at
            and population.day_end > running_proofs.proven_at

),

day_proofs as (

    select
        proofs_judged.item_key,
        {{ mart_distinct_string_agg('proofs_judged.proof', "', '") }} as running_evidence,
        {{ mart_distinct_array_agg(
            'proofs_judged.evidence_id', where='proofs_judged.evidence_id is not null'
        ) }} as running_evidence_ids,
        {{ mart_distinct_string_agg(
            'proofs_judged.proof', "', '", where='proofs_judged.is_unlogged'
        ) }} as unlogged_running_evidence,
        bool_or(proofs_judged.is_unlogged) as has_unlogged_proof
    from proofs_judged
    group by proofs_judged.item_key

),

reasons as (

    -- every reason code whose test fails, sorted; empty when the item passes
    select
        population.item_key,
        {{ exception_reasons({
            'AUDIT_DISABLED': 'coalesce(audit_periods.has_audit_off, false)'
                ~ ' or session_sets.session_settings is not null',
            'PGAUDIT_NOT_LOADED': 'coalesce(audit_periods.has_not_loaded, false)',
            'SETTINGS_UNKNOWN': 'coalesce(audit_periods.has_unknown_settings, false)',
            'NO_LOG_EVIDENCE': 'coalesce(day_proofs.has_unlogged_proof, false)',
            'LOG_GAP': 'coalesce(day_files.has_missing_file, false)'
                ~ ' or day_silences.silent_periods is not null',
        }) }} as exception_reasons
    from population
    left join audit_periods
        on
            population.cluster = audit_periods.cluster
            and population.log_day = audit_periods.log_day
    left join session_sets
        on population.item_key = session_sets.item_key
    left join day_proofs
        on population.item_key = day_proofs.item_key
    left join day_files
        on population.item_key = day_files.item_key
    left join day_silences
        on population.item_key = day_silences.item_key

),

population_sizes as (

    {{ searched_population_sizes() }}

),

searched as (

    -- NO_LOG_EVIDENCE and LOG_GAP claim a log is missing: they searched
    -- every audit log file captured for the cluster
    select
        population.item_key,
        {{ searched_population(
            'reasons.exception_reasons', ['LOG_GAP', 'NO_LOG_EVIDENCE'],
            "'audit_log:' || population.cluster"
        ) }} as searched_population
    from population
    inner join reasons
        on population.item_key = reasons.item_key

),

final as (

    select
        {{ run_id() }} as run_id,
        'LG-01' as control_id,
        population.item_key,
        population.cluster,
        population.log_day,
        running_periods.running_periods,
        concat_ws(', ', audit_periods.audit_off_periods, session_sets.session_settings)
            as audit_off_periods,
        day_files.first_record_at,
        day_files.last_record_at,
        day_files.log_files,
        day_files.missing_files,
        day_silences.silent_periods,
        day_proofs.running_evidence,
        day_proofs.unlogged_running_evidence,
        settings_basis.settings_basis,
        restarts.unverified_restarts,
        {{ control_result('reasons.exception_reasons') }} as result,
        reasons.exception_reasons,
        cast(null as {{ t_text() }}) as candidates,
        null::integer as candidate_count,
        searched.searched_population,
        population_sizes.searched_count,
        population.evidence_id,
        population.evidence_locator,
        {{ sorted_uuids(arrays=[
            'day_files.log_evidence_ids',
            'day_proofs.running_evidence_ids',
            'settings_basis.settings_evidence_ids',
            'day_silences.silence_evidence_ids',
        ]) }} as supporting_evidence_ids,
        {{ control_evidence_id() }} as control_evidence_id
    from population
    inner join reasons
        on population.item_key = reasons.item_key
    inner join searched
        on population.item_key = searched.item_key
    left join population_sizes
        on searched.searched_population = population_sizes.population_key
    left join running_periods
        on
            population.cluster = running_periods.cluster
            and population.log_day = running_periods.log_day
    left join audit_periods
        on
            population.cluster = audit_periods.cluster
            and population.log_day = audit_periods.log_day
    left join settings_basis
        on
            population.cluster = settings_basis.cluster
            and population.log_day = settings_basis.log_day
    left join session_sets
        on population.item_key = session_sets.item_key
    left join restarts
        on population.item_key = restarts.item_key
    left join day_files
        on population.item_key = day_files.item_key
    left join day_proofs
        on population.item_key = day_proofs.item_key
    left join day_silences
        on population.item_key = day_silences.item_key

)

select * from final
