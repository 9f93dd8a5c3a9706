-- What the captured log files of each cluster cover (LG-01), from the
-- pgaudit_log sources' completeness statements: one row per file with the
-- stretch it covers, and one per file of the rotation sequence that is
-- missing (the statement's `missing_files`, its LOG_GAP finding). A file
-- covers its rotation period (its name's time, `named_at`, to one
-- `log_rotation_age` later: the syslogger opens a file for every period in
-- which the server ran, even an empty one) and any record it holds outside
-- it. File names are local times in the source's `log_timezone`: the
-- statement records each name's time converted to UTC (`named_at`,
-- `rotation_at`: ISO times ending in `Z`), which is what is read here
-- (a statement of an earlier version, with naive times, is read as UTC).

with

statements as (

    select * from {{ ref('stg_completeness__statements') }}

),

run_sources as (

    select * from {{ ref('stg_soxtrail__run_sources') }}

),

audit_statements as (

    select
        run_sources.cluster,
        statements.source_name,
        statements.facts,
        cast(
            {{ json_text('statements.facts', 'log_rotation_age_seconds') }} as integer
        ) as age_seconds,
        statements.evidence_id,
        statements.evidence_locator
    from statements
    inner join run_sources
        on statements.source_name = run_sources.source_name
    where
        statements.connector = 'pgaudit_log'
        and run_sources.cluster is not null

),

files as (

    select
        audit_statements.cluster,
        audit_statements.source_name,
        'file' as span_kind,
        {{ json_text('log_file.doc', 'file') }} as file_name,
        {{ json_text('log_file.doc', 'object') }} as object_name,
        {{ to_utc_timestamp(json_text('log_file.doc', 'named_at')) }} as named_at,
        {{ to_utc_timestamp(json_text('log_file.doc', 'first_record_at')) }}
            as first_record_at,
        {{ to_utc_timestamp(json_text('log_file.doc', 'last_record_at')) }}
            as last_record_at,
        audit_statements.age_seconds,
        audit_statements.evidence_id,
        audit_statements.evidence_locator
    from audit_statements
    cross join
        lateral {{ db_audit_json_elements('audit_statements.facts', 'files') }}
            as log_file (doc)

),

missing as (

    select
        audit_statements.cluster,
        audit_statements.source_name,
        'missing' as span_kind,
        {{ json_text('missing_file.doc', 'file') }} as file_name,
        cast(null as {{ t_text() }}) as object_name,
        {{ to_utc_timestamp(json_text('missing_file.doc', 'rotation_at')) }} as named_at,
        cast(null as {{ t_timestamptz() }}) as first_record_at,
        cast(null as {{ t_timestamptz() }}) as last_record_at,
        audit_statements.age_seconds,
        audit_statements.evidence_id,
        audit_statements.evidence_locator
    from audit_statements
    cross join
        lateral {{ db_audit_json_elements('audit_statements.facts', 'missing_files') }}
            as missing_file (doc)

),

spans as (

    select * from files
    union all
    select * from missing

),

final as (

    select
        spans.cluster,
        spans.source_name,
        spans.span_kind,
        spans.file_name,
        spans.object_name,
        spans.first_record_at,
        spans.last_record_at,
        case
            when spans.named_at is null then spans.first_record_at
            when spans.first_record_at is null then spans.named_at
            else least(spans.named_at, spans.first_record_at)
        end as span_from,
        case
            when spans.named_at is null or spans.age_seconds is null then spans.last_record_at
            when spans.last_record_at is null
                then {{ add_seconds('spans.named_at', 'spans.age_seconds') }}
            else greatest(
                {{ add_seconds('spans.named_at', 'spans.age_seconds') }},
                spans.last_record_at
            )
        end as span_to,
        spans.evidence_id,
        spans.evidence_locator
    from spans

)

select * from final
