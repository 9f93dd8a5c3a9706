-- One row per pgaudit entry of the run of the classes the controls read
-- (ROLE and DDL), whichever log encoding it came in, with the AUDIT message
-- split into its nine fields.

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

role_and_ddl_entries as materialized (

    -- The intermediate models read ROLE and DDL entries only: the class is
    -- the fourth field of the AUDIT message, so a prefix test on the raw
    -- message keeps the other classes (READ, WRITE, MISC, ...), the bulk of
    -- a busy log, from being parsed at all. The class test is also the
    -- predicate of three partial indexes (soxtrail/sql/platform.sql): keep
    -- the two identical, or the marts go back to reading every raw row.
    select
        log_entries.*,
        regexp_replace(log_entries.message, '^\s*AUDIT: ', '') as audit_body,
        -- AUDIT: type,statement id,substatement id,class,command,object type,
        -- object name,statement,parameter. Object name, statement and
        -- parameter are CSV fields: quoted (with "" for ") when they hold
        -- commas, quotes or newlines, so a quoted statement may span lines.
        -- A message of another shape keeps its row, every field null.
        log_entries.message ~ (
            '^\s*AUDIT: [^,]*,[^,]*,[^,]*,[^,]*,[^,]*,[^,]*,'
            || '(?:"(?:[^"]|"")*"|[^,"]*),'
            || '(?:"(?:[^"]|"")*"|[^,"]*),'
            || '(?:"(?:[^"]|"")*"|[^,"]*)\s*$'
        ) as is_well_formed,
        -- what follows the six plain fields (which hold no comma)
        regexp_replace(log_entries.message, '^\s*AUDIT: (?:[^,]*,){6}', '') as fields_7_to_9
    from log_entries
    where
        log_entries.message ~ '^\s*AUDIT: '
        and log_entries.message ~* '^\s*AUDIT: [^,]*,[^,]*,[^,]*,(ROLE|DDL),'

),

csv_fields as materialized (

    -- The six plain fields hold no comma; the three CSV fields after them
    -- are taken one at a time, each the longest "quoted" or comma-free text
    -- at the start of what is left. (No capture groups: PostgreSQL's regex
    -- engine matches without them a hundred times faster.)
    select
        role_and_ddl_entries.*,
        substring(
            role_and_ddl_entries.fields_7_to_9 from '^(?:"(?:[^"]|"")*"|[^,"]*)'
        ) as object_name_field
    from role_and_ddl_entries

),

split_messages as materialized (

    select
        csv_fields.*,
        substring(
            substr(csv_fields.fields_7_to_9, length(csv_fields.object_name_field) + 2)
            from '^(?:"(?:[^"]|"")*"|[^,"]*)'
        ) as statement_field
    from csv_fields

),

parsed_messages as materialized (

    select
        split_messages.*,
        case when split_messages.is_well_formed then array[
            split_part(split_messages.audit_body, ',', 1),
            split_part(split_messages.audit_body, ',', 2),
            split_part(split_messages.audit_body, ',', 3),
            split_part(split_messages.audit_body, ',', 4),
            split_part(split_messages.audit_body, ',', 5),
            split_part(split_messages.audit_body, ',', 6),
            split_messages.object_name_field,
            split_messages.statement_field,
            substring(
                substr(
                    split_messages.fields_7_to_9,
                    length(split_messages.object_name_field)
                    + length(split_messages.statement_field) + 3
                )
                from '^(?:"(?:[^"]|"")*"|[^,"]*)'
            )
        ] end as audit_fields
    from split_messages

),

final as (

    select
        md5(parsed_messages.evidence_id::text || '|' || parsed_messages.evidence_locator)::uuid
            as audit_entry_id,
        parsed_messages.cluster,
        parsed_messages.source_name,
        parsed_messages.log_format,
        {{ to_utc_timestamp('parsed_messages.log_time') }} as logged_at,
        parsed_messages.user_name,
        parsed_messages.database_name,
        nullif(parsed_messages.process_id, '') as process_id,
        nullif(parsed_messages.session_id, '') as session_id,
        -- the statement id is unique within a backend: the session id when
        -- the log has one (%c), else the process id
        coalesce(
            nullif(parsed_messages.session_id, ''),
            nullif(parsed_messages.process_id, '')
        ) as session_key,
        nullif(parsed_messages.session_line_num, '')::bigint as session_line_num,
        nullif(parsed_messages.application_name, '') as application_name,
        parsed_messages.audit_fields[1] as audit_type,
        nullif(parsed_messages.audit_fields[2], '')::bigint as statement_id,
        nullif(parsed_messages.audit_fields[3], '')::bigint as substatement_id,
        upper(parsed_messages.audit_fields[4]) as audit_class,
        upper(parsed_messages.audit_fields[5]) as command,
        nullif(parsed_messages.audit_fields[6], '') as object_type,
        nullif({{ csv_unquote('parsed_messages.audit_fields[7]') }}, '') as object_name,
        {{ csv_unquote('parsed_messages.audit_fields[8]') }} as statement_text,
        {{ csv_unquote('parsed_messages.audit_fields[9]') }} as parameter,
        parsed_messages.message,
        parsed_messages.run_id,
        parsed_messages.evidence_id,
        parsed_messages.evidence_locator
    from parsed_messages

)

select * from final
