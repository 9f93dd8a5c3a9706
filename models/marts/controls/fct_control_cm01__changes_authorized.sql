-- CM-01 Changes authorized.
-- Question: was every DDL statement on an in-scope cluster this quarter, by
-- a person or a service account, covered by an approved change ticket for
-- that cluster: the ticket it names, or one whose approved window it ran in?

with

ddl_statements as (

    select * from {{ ref('int_ddl_statements_deduplicated') }}

),

scoped_clusters as (

    select * from {{ ref('int_clusters_scoped') }}

),

identity_mappings as (

    select * from {{ ref('stg_catalogs__identity_mappings') }}

),

tickets as (

    select * from {{ ref('stg_tickets__tickets') }}

),

approved_change_tickets as (

    select tickets.*
    from tickets
    where
        tickets.ticket_type = 'change'
        and tickets.is_approved

),

population as (

    select
        ddl_statements.cluster
        || '|' || coalesce(ddl_statements.session_key, '')
        || '|' || coalesce(ddl_statements.statement_id::text, ddl_statements.audit_entry_id::text)
            as item_key,
        ddl_statements.cluster,
        ddl_statements.session_key,
        ddl_statements.statement_id,
        ddl_statements.executed_at,
        ddl_statements.executed_by,
        coalesce(
            identity_mappings.identity, lower(ddl_statements.executed_by)
        ) as executed_by_identity,
        coalesce(identity_mappings.identity_type, 'person') as executed_by_identity_type,
        ddl_statements.command,
        ddl_statements.object_type,
        ddl_statements.object_name,
        ddl_statements.statement_text,
        ddl_statements.audit_entry_count,
        ddl_statements.ticket_key as referenced_ticket_key,
        ddl_statements.evidence_id,
        ddl_statements.evidence_locator
    from ddl_statements
    inner join scoped_clusters
        on ddl_statements.cluster = scoped_clusters.cluster
    left join identity_mappings
        on lower(ddl_statements.executed_by) = lower(identity_mappings.login_role)
    where
        ddl_statements.executed_at >= {{ quarter_start_at() }}
        and ddl_statements.executed_at < {{ quarter_end_at() }}

),

explicit_tickets as (

    -- a named ticket is the authority: it must be an approved change ticket
    -- for this cluster, and the change must run inside its window if it has one
    select
        population.item_key,
        tickets.ticket_key,
        tickets.evidence_id,
        tickets.ticket_type = 'change' as has_change_ticket,
        tickets.cluster is null or lower(tickets.cluster) = lower(population.cluster)
            as is_ticket_for_cluster,
        tickets.is_approved as is_ticket_approved,
        population.executed_at >= coalesce(tickets.window_start, '-infinity'::timestamptz)
        and population.executed_at <= coalesce(tickets.window_end, 'infinity'::timestamptz)
            as is_within_change_window
    from population
    inner join tickets
        on population.referenced_ticket_key = tickets.ticket_key

),

window_tickets as (

    -- no key: an approved change ticket for the cluster whose window
    -- contains the statement covers it
    select
        population.item_key,
        count(approved_change_tickets.ticket_key) > 0 as has_change_ticket,
        (array_agg(
            approved_change_tickets.ticket_key order by
                approved_change_tickets.window_start,
                approved_change_tickets.ticket_key
        )
        filter (
            where population.executed_at between approved_change_tickets.window_start
            and approved_change_tickets.window_end
        ))[1] as ticket_key,
        (array_agg(
            approved_change_tickets.evidence_id order by
                approved_change_tickets.window_start,
                approved_change_tickets.ticket_key
        )
        filter (
            where population.executed_at between approved_change_tickets.window_start
            and approved_change_tickets.window_end
        ))[1] as evidence_id
    from population
    left join approved_change_tickets
        on lower(population.cluster) = lower(approved_change_tickets.cluster)
    where population.referenced_ticket_key is null
    group by population.item_key

),

change_ticket as (

    select
        population.item_key,
        case
            when population.referenced_ticket_key is not null then explicit_tickets.ticket_key
            else window_tickets.ticket_key
        end as ticket_key,
        case
            when population.referenced_ticket_key is not null then 'explicit'
            when window_tickets.ticket_key is not null then 'window'
        end as ticket_match,
        case
            when population.referenced_ticket_key is not null
                then coalesce(explicit_tickets.has_change_ticket, false)
            else window_tickets.has_change_ticket
        end as has_change_ticket,
        case
            when population.referenced_ticket_key is not null then explicit_tickets.evidence_id
            else window_tickets.evidence_id
        end as ticket_evidence_id
    from population
    left join explicit_tickets
        on population.item_key = explicit_tickets.item_key
    left join window_tickets
        on population.item_key = window_tickets.item_key

),

ticket_for_cluster as (

    select
        population.item_key,
        case
            when population.referenced_ticket_key is not null
                then explicit_tickets.is_ticket_for_cluster
        end as is_ticket_for_cluster
    from population
    left join explicit_tickets
        on population.item_key = explicit_tickets.item_key

),

ticket_approved as (

    select
        population.item_key,
        case
            when population.referenced_ticket_key is not null
                then explicit_tickets.is_ticket_approved
        end as is_ticket_approved
    from population
    left join explicit_tickets
        on population.item_key = explicit_tickets.item_key

),

within_change_window as (

    select
        population.item_key,
        case
            when population.referenced_ticket_key is not null
                then explicit_tickets.is_within_change_window
            -- approved change tickets exist for the cluster, but none was open
            when window_tickets.has_change_ticket then window_tickets.ticket_key is not null
        end as is_within_change_window
    from population
    left join explicit_tickets
        on population.item_key = explicit_tickets.item_key
    left join window_tickets
        on population.item_key = window_tickets.item_key

),

reasons as (

    -- every reason code whose test fails, sorted; empty when the item passes
    select
        population.item_key,
        {{ exception_reasons({
            'NO_CHANGE_TICKET': 'not change_ticket.has_change_ticket',
            'TICKET_CLUSTER_MISMATCH': 'not ticket_for_cluster.is_ticket_for_cluster',
            'NOT_APPROVED': 'not ticket_approved.is_ticket_approved',
            'OUTSIDE_CHANGE_WINDOW': 'not within_change_window.is_within_change_window',
        }) }} as exception_reasons
    from population
    inner join change_ticket
        on population.item_key = change_ticket.item_key
    inner join ticket_for_cluster
        on population.item_key = ticket_for_cluster.item_key
    inner join ticket_approved
        on population.item_key = ticket_approved.item_key
    inner join within_change_window
        on population.item_key = within_change_window.item_key

),

final as (

    select
        {{ run_id() }} as run_id,
        'CM-01' as control_id,
        population.item_key,
        population.cluster,
        population.session_key,
        population.statement_id,
        population.executed_at,
        population.executed_by,
        population.executed_by_identity,
        population.executed_by_identity_type,
        population.command,
        population.object_type,
        population.object_name,
        population.statement_text,
        population.audit_entry_count,
        population.referenced_ticket_key,
        change_ticket.ticket_key,
        change_ticket.ticket_match,
        change_ticket.has_change_ticket,
        ticket_for_cluster.is_ticket_for_cluster,
        ticket_approved.is_ticket_approved,
        within_change_window.is_within_change_window,
        {{ control_result('reasons.exception_reasons') }} as result,
        reasons.exception_reasons,
        population.evidence_id,
        population.evidence_locator,
        {{ sorted_uuids(['change_ticket.ticket_evidence_id']) }} as supporting_evidence_ids,
        {{ control_evidence_id() }} as control_evidence_id
    from population
    inner join change_ticket
        on population.item_key = change_ticket.item_key
    inner join ticket_for_cluster
        on population.item_key = ticket_for_cluster.item_key
    inner join ticket_approved
        on population.item_key = ticket_approved.item_key
    inner join within_change_window
        on population.item_key = within_change_window.item_key
    inner join reasons
        on population.item_key = reasons.item_key

)

select * from final
