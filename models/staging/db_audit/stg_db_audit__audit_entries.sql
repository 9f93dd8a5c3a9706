-- One row per pgaudit entry of the run of the classes the controls read
-- (ROLE and DDL), whichever log encoding it came in, with the AUDIT message
-- split into its nine fields.

{#- one CSV field of the AUDIT message (macros/dialect/audit_logging.sql) -#}
{%- set csv_field = db_audit_csv_field() %}

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
        {{ json_text('jsonlog.doc', 'timestamp') }} as log_time,
        {{ json_text('jsonlog.doc', 'user') }} as user_name,
        {{ json_text('jsonlog.doc', 'dbname') }} as database_name,
        {{ json_text('jsonlog.doc', 'pid') }} as process_id,
        {{ json_text('jsonlog.doc', 'session_id') }} as session_id,
        {{ json_text('jsonlog.doc', 'line_num') }} as session_line_num,
        {{ json_text('jsonlog.doc', 'application_name') }} as application_name,
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

role_and_ddl_entries as {{ db_audit_materialized() }} (

    -- The intermediate models read ROLE and DDL entries only: the class is
    -- the fourth field of the AUDIT message, so a prefix test on the raw
    -- message keeps the other classes (READ, WRITE, MISC, ...), the bulk of
    -- a busy log, from being parsed at all. The class test is also the
    -- predicate of three partial indexes (soxtrail/sql/platform.sql): keep
    -- the two identical, or the marts go back to reading every raw row.
    select
        log_entries.*,
        {{ re_replace('log_entries.message', "'^\\s*AUDIT: '", "''") }} as audit_body,
        -- AUDIT: type,statement id,substatement id,class,command,object type,
        -- object name,statement,parameter. Object name, statement and
        -- parameter are CSV fields: quoted (with "" for ") when they hold
        -- commas, quotes or newlines, so a quoted statement may span lines.
        -- A message of another shape keeps its row, every field null.
        {{ re_match(
            'log_entries.message',
            "'^\\s*AUDIT: [^,]*,[^,]*,[^,]*,[^,]*,[^,]*,[^,]*,"
            ~ csv_field ~ ',' ~ csv_field ~ ',' ~ csv_field ~ "\\s*$'"
        ) }} as is_well_formed,
        -- what follows the six plain fields (which hold no comma)
        {{ re_replace('log_entries.message', "'^\\s*AUDIT: (?:[^,]*,){6}'", "''") }}
            as fields_7_to_9
    from log_entries
    where
        {{ re_match('log_entries.message', "'^\\s*AUDIT: '") }}
        and {{ re_imatch('log_entries.message', "'^\\s*AUDIT: [^,]*,[^,]*,[^,]*,(ROLE|DDL),'") }}

),

csv_fields as {{ db_audit_materialized() }} (

    -- The six plain fields hold no comma; the three CSV fields after them
    -- are taken one at a time, each the longest "quoted" or comma-free text
    -- at the start of what is left. (No capture groups: PostgreSQL's regex
    -- engine matches without them a hundred times faster.)
    select
        role_and_ddl_entries.*,
        {{ re_substr('role_and_ddl_entries.fields_7_to_9', "'^" ~ csv_field ~ "'") }}
            as object_name_field
    from role_and_ddl_entries

),

split_messages as {{ db_audit_materialized() }} (

    select
        csv_fields.*,
        {{ re_substr(
            'substr(csv_fields.fields_7_to_9, length(csv_fields.object_name_field) + 2)',
            "'^" ~ csv_field ~ "'"
        ) }} as statement_field
    from csv_fields

),

parsed_messages as {{ db_audit_materialized() }} (

    -- the nine fields of a well-formed message, in order
    select
        split_messages.*,
        case
            when split_messages.is_well_formed
                then split_part(split_messages.audit_body, ',', 1)
        end as audit_field_1,
        case
            when split_messages.is_well_formed
                then split_part(split_messages.audit_body, ',', 2)
        end as audit_field_2,
        case
            when split_messages.is_well_formed
                then split_part(split_messages.audit_body, ',', 3)
        end as audit_field_3,
        case
            when split_messages.is_well_formed
                then split_part(split_messages.audit_body, ',', 4)
        end as audit_field_4,
        case
            when split_messages.is_well_formed
                then split_part(split_messages.audit_body, ',', 5)
        end as audit_field_5,
        case
            when split_messages.is_well_formed
                then split_part(split_messages.audit_body, ',', 6)
        end as audit_field_6,
        case
            when split_messages.is_well_formed then split_messages.object_name_field
        end as audit_field_7,
        case
            when split_messages.is_well_formed then split_messages.statement_field
        end as audit_field_8,
        case
            when split_messages.is_well_formed
                then {{ re_substr(
                    'substr(split_messages.fields_7_to_9, '
                    ~ 'length(split_messages.object_name_field) '
                    ~ '+ length(split_messages.statement_field) + 3)',
                    "'^" ~ csv_field ~ "'"
                ) }}
        end as audit_field_9
    from split_messages

),

final as (

    select
        {{ uuid_from_md5(
            'cast(parsed_messages.evidence_id as ' ~ t_text() ~ ")"
            ~ " || '|' || parsed_messages.evidence_locator"
        ) }} as audit_entry_id,
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
        parsed_messages.audit_field_1 as audit_type,
        nullif(parsed_messages.audit_field_2, '')::bigint as statement_id,
        nullif(parsed_messages.audit_field_3, '')::bigint as substatement_id,
        upper(parsed_messages.audit_field_4) as audit_class,
        upper(parsed_messages.audit_field_5) as command,
        nullif(parsed_messages.audit_field_6, '') as object_type,
        nullif({{ csv_unquote('parsed_messages.audit_field_7') }}, '') as object_name,
        {{ csv_unquote('parsed_messages.audit_field_8') }} as statement_text,
        {{ csv_unquote('parsed_messages.audit_field_9') }} as parameter,
        parsed_messages.message,
        parsed_messages.run_id,
        parsed_messages.evidence_id,
        parsed_messages.evidence_locator
    from parsed_messages

)

select * from final
