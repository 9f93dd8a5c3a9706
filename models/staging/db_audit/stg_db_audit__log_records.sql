-- The time of every loaded log record of the run (audit entries and server
-- lines: what the loader keeps), for LG-01's silence rule: read only when the
-- policy sets a silence limit (var `lg01_silence_limit_hours`); otherwise the
-- constant-false filter leaves it empty without a scan, since idle clusters may
-- log nothing for days and the rule is off by default.

{% set is_wanted = 'false' if var('lg01_silence_limit_hours', none) is none else 'true' %}

with

csvlog as (

    select
        csvlog.cluster,
        csvlog.log_time,
        csvlog.evidence_id
    from {{ source('db_audit', 'pgaudit_csvlog') }} as csvlog
    where {{ this_run('csvlog') }} and {{ is_wanted }}

),

jsonlog as (

    select
        jsonlog.cluster,
        {{ json_text('jsonlog.doc', 'timestamp') }} as log_time,
        jsonlog.evidence_id
    from {{ source('db_audit', 'pgaudit_jsonlog') }} as jsonlog
    where {{ this_run('jsonlog') }} and {{ is_wanted }}

),

stderr as (

    select
        stderr.cluster,
        stderr.log_time,
        stderr.evidence_id
    from {{ source('db_audit', 'pgaudit_stderr') }} as stderr
    where {{ this_run('stderr') }} and {{ is_wanted }}

),

log_lines as (

    select * from csvlog
    union all
    select * from jsonlog
    union all
    select * from stderr

),

final as (

    select
        log_lines.cluster,
        {{ to_utc_timestamp('log_lines.log_time') }} as logged_at,
        log_lines.evidence_id
    from log_lines

)

select * from final
