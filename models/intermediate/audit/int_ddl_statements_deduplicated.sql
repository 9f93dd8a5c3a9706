-- One row per DDL statement, however many audit entries it produced
-- (substatements, log_relation): keyed by (cluster, session, statement id),
-- with the ticket key its first entry names.

with

audit_entries as (

    select * from {{ ref('stg_db_audit__audit_entries') }}

),

ticket_keys as (

    select * from {{ ref('int_ticket_keys_extracted') }}

),

ddl_entries as (

    select
        audit_entries.*,
        ticket_keys.ticket_key,
        ticket_keys.ticket_key_source,
        count(*) over (
            partition by
                audit_entries.cluster,
                audit_entries.session_key,
                coalesce(
                    cast(audit_entries.statement_id as {{ t_text() }}),
                    cast(audit_entries.audit_entry_id as {{ t_text() }})
                )
        ) as audit_entry_count,
        row_number() over (
            partition by
                audit_entries.cluster,
                audit_entries.session_key,
                coalesce(
                    cast(audit_entries.statement_id as {{ t_text() }}),
                    cast(audit_entries.audit_entry_id as {{ t_text() }})
                )
            order by
                audit_entries.substatement_id asc nulls last,
                audit_entries.logged_at asc nulls last,
                audit_entries.session_line_num asc nulls last,
                audit_entries.evidence_locator asc nulls last
        ) as entry_rank
    from audit_entries
    left join ticket_keys
        on audit_entries.audit_entry_id = ticket_keys.audit_entry_id
    where audit_entries.audit_class = 'DDL'

),

final as (

    select
        ddl_entries.cluster,
        ddl_entries.session_key,
        ddl_entries.statement_id,
        ddl_entries.audit_entry_id,
        ddl_entries.logged_at as executed_at,
        ddl_entries.user_name as executed_by,
        ddl_entries.database_name,
        ddl_entries.command,
        ddl_entries.object_type,
        ddl_entries.object_name,
        ddl_entries.statement_text,
        ddl_entries.application_name,
        ddl_entries.ticket_key,
        ddl_entries.ticket_key_source,
        ddl_entries.audit_entry_count,
        ddl_entries.run_id,
        ddl_entries.evidence_id,
        ddl_entries.evidence_locator
    from ddl_entries
    where ddl_entries.entry_rank = 1

)

select * from final
