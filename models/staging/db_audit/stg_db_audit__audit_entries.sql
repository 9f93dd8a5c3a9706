-- One row per pgaudit entry of the run, whichever log encoding it came in,
-- with the AUDIT message split into its nine fields.

with

csvlog as (

    select
        {{ carry_evidence('csvlog') }},
        csvlog.source_name,
        csvlog.cluster,
        'csvlog' as log_format,
        csvlog.log_time,
        csvlog.user_name,
        csvlog.database_name,
        csvlog.process_id,
        csvlog.session_id,
        csvlog.session_line_num,
        csvlog.application_name,
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
        jsonlog.doc ->> 'timestamp' as log_time,
        jsonlog.doc ->> 'user' as user_name,
        jsonlog.doc ->> 'dbname' as database_name,
        jsonlog.doc ->> 'pid' as process_id,
        jsonlog.doc ->> 'session_id' as session_id,
        jsonlog.doc ->> 'line_num' as session_line_num,
        jsonlog.doc ->> 'application_name' as application_name,
        jsonlog.doc ->> 'message' as message
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
        stderr.user_name,
        stderr.database_name,
        stderr.process_id,
        stderr.session_id,
        stderr.session_line_num,
        stderr.application_name,
        stderr.message
    from {{ source('db_audit', 'pgaudit_stderr') }} as stderr
    where {{ this_run('stderr') }}

),

log_entries as (

    select * from csvlog
    union all
    select * from jsonlog
    union all
    select * from stderr

),

split_messages as (

    -- AUDIT: type,statement id,substatement id,class,command,object type,
    -- object name,statement,parameter. Object name, statement and parameter
    -- are CSV fields: quoted (with "" for ") when they hold commas, quotes
    -- or newlines, so a quoted statement may span lines.
    select
        log_entries.*,
        regexp_match(
            log_entries.message,
            '^\s*AUDIT: ([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),'
            || '("(?:[^"]|"")*"|[^,"]*),'
            || '("(?:[^"]|"")*"|[^,"]*),'
            || '("(?:[^"]|"")*"|[^,"]*)\s*$'
        ) as audit_fields
    from log_entries
    where log_entries.message ~ '^\s*AUDIT: '

),

final as (

    select
        md5(split_messages.evidence_id::text || '|' || split_messages.evidence_locator)::uuid
            as audit_entry_id,
        split_messages.cluster,
        split_messages.source_name,
        split_messages.log_format,
        {{ to_utc_timestamp('split_messages.log_time') }} as logged_at,
        split_messages.user_name,
        split_messages.database_name,
        nullif(split_messages.process_id, '') as process_id,
        nullif(split_messages.session_id, '') as session_id,
        -- the statement id is unique within a backend: the session id when
        -- the log has one (%c), else the process id
        coalesce(
            nullif(split_messages.session_id, ''),
            nullif(split_messages.process_id, '')
        ) as session_key,
        nullif(split_messages.session_line_num, '')::bigint as session_line_num,
        nullif(split_messages.application_name, '') as application_name,
        split_messages.audit_fields[1] as audit_type,
        nullif(split_messages.audit_fields[2], '')::bigint as statement_id,
        nullif(split_messages.audit_fields[3], '')::bigint as substatement_id,
        upper(split_messages.audit_fields[4]) as audit_class,
        upper(split_messages.audit_fields[5]) as command,
        nullif(split_messages.audit_fields[6], '') as object_type,
        nullif({{ csv_unquote('split_messages.audit_fields[7]') }}, '') as object_name,
        {{ csv_unquote('split_messages.audit_fields[8]') }} as statement_text,
        {{ csv_unquote('split_messages.audit_fields[9]') }} as parameter,
        split_messages.message,
        split_messages.run_id,
        split_messages.evidence_id,
        split_messages.evidence_locator
    from split_messages

)

select * from final
