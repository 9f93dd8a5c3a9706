-- One row per server line of the run that LG-01 reads (startup, shutdown,
-- crash, configuration reload, pgaudit.log changes), whichever log encoding
-- it came in, with its kind and, where the line gives them, the setting, its
-- new value and the earlier time it names. The loader keeps these lines
-- beside the audit entries (pgaudit_classify.is_server_event); the audit
-- entries that change pgaudit.log (ALTER SYSTEM, SET) are read from the
-- same tables here, since pgaudit logs them as AUDIT lines.

with

csvlog as (

    select
        {{ carry_evidence('csvlog') }},
        csvlog.source_name,
        csvlog.cluster,
        'csvlog' as log_format,
        csvlog.log_time,
        csvlog.process_id,
        csvlog.session_id,
        csvlog.user_name,
        csvlog.error_severity,
        csvlog.message
    from {{ source('db_audit', 'pgaudit_csvlog') }} as csvlog
    where {{ this_run('csvlog') }}

),

jsonlog as (

    select
        {{ carry_evidence('jsonlog') }},
        jsonlog.source_name,
        jsonlog.cluster,
        'jsonlog' as log_format,
        {{ json_text('jsonlog.doc', 'timestamp') }} as log_time,
        {{ json_text('jsonlog.doc', 'pid') }} as process_id,
        {{ json_text('jsonlog.doc', 'session_id') }} as session_id,
        {{ json_text('jsonlog.doc', 'user') }} as user_name,
        {{ json_text('jsonlog.doc', 'error_severity') }} as error_severity,
        {{ json_text('jsonlog.doc', 'message') }} as message
    from {{ source('db_audit', 'pgaudit_jsonlog') }} as jsonlog
    where {{ this_run('jsonlog') }}

),

stderr as (

    select
        {{ carry_evidence('stderr') }},
        stderr.source_name,
        stderr.cluster,
        'stderr' as log_format,
        stderr.log_time,
        stderr.process_id,
        stderr.session_id,
        stderr.user_name,
        stderr.error_severity,
        stderr.message
    from {{ source('db_audit', 'pgaudit_stderr') }} as stderr
    where {{ this_run('stderr') }}

),

log_lines as (

    select * from csvlog
    union all
    select * from jsonlog
    union all
    select * from stderr

),

classified as (

    select
        log_lines.*,
        case
            when log_lines.message like 'database system is ready to accept%'
                then 'ready'
            when log_lines.message = 'database system is shut down'
                then 'shut_down'
            when log_lines.message like 'database system was shut down at %'
                then 'was_shut_down_at'
            when log_lines.message like 'database system was shut down in recovery at %'
                then 'was_shut_down_at'
            when log_lines.message like 'database system was interrupted%'
                then 'was_interrupted'
            when log_lines.message like 'database system was not properly shut down%'
                then 'not_properly_shut_down'
            when log_lines.message like 'received % shutdown request'
                then 'shutdown_request'
            when log_lines.message like 'terminating any other active server processes%'
                then 'terminating_others'
            when log_lines.message like 'received SIGHUP, reloading configuration files%'
                then 'reload'
            when log_lines.message like 'parameter "%" changed to "%"'
                then 'setting_changed'
            when log_lines.message like 'parameter "%" removed from configuration file%'
                then 'setting_removed'
            -- ALTER SYSTEM / SET of pgaudit.log: a log_statement line or pgaudit's own
            when {{ re_imatch(
                'log_lines.message',
                "'(^|,|: )alter\\s+system\\s+(re)?set\\s+\"?pgaudit\\.log\\M'"
            ) }}
                then 'alter_system'
            when {{ re_imatch(
                'log_lines.message',
                "'(^|,|: )(set(\\s+session|\\s+local)?|reset)\\s+\"?pgaudit\\.log\\M'"
            ) }}
                then 'session_set'
        end as event_kind
    from log_lines
    where
        log_lines.message like 'database system %'
        or log_lines.message like 'received %'
        or log_lines.message like 'terminating any other active server processes%'
        or log_lines.message like 'parameter "%'
        or lower(log_lines.message) like '%pgaudit.log%'

),

final as (

    select
        classified.run_id,
        classified.evidence_id,
        classified.evidence_locator,
        classified.source_name,
        classified.cluster,
        classified.log_format,
        {{ to_utc_timestamp('classified.log_time') }} as logged_at,
        classified.process_id,
        classified.session_id,
        classified.user_name,
        classified.error_severity,
        classified.event_kind,
        case
            when classified.event_kind in ('setting_changed', 'setting_removed')
                then {{ re_substr('classified.message', "'^parameter \"([^\"]*)\"'", 1) }}
            when classified.event_kind in ('alter_system', 'session_set')
                then 'pgaudit.log'
        end as setting_name,
        case
            when classified.event_kind = 'setting_changed'
                then {{ re_substr('classified.message', "' changed to \"(.*)\"$'", 1) }}
        end as setting_value,
        -- the earlier moment a startup line names: the last shutdown, or the last
        -- time the server was known up before a crash
        case
            when classified.event_kind in ('was_shut_down_at', 'was_interrupted')
                then {{ re_substr(
                    'classified.message',
                    "' at (\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d(?:\\.\\d+)?(?: \\S+)?)$'",
                    1
                ) }}
        end as named_time_text,
        classified.message
    from classified
    where classified.event_kind is not null

)

select * from final
