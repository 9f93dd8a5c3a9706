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

population_sizes as (

    {{ searched_population_sizes() }}

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
        || '|' || coalesce(
            cast(ddl_statements.statement_id as {{ t_text() }}),
            cast(ddl_statements.audit_entry_id as {{ t_text() }})
        )
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
        tickets.evidence_locator || ' ' || tickets.ticket_key as ticket_locator,
        tickets.window_start,
        tickets.window_end,
        tickets.ticket_type = 'change' as has_change_ticket,
        tickets.cluster is null or lower(tickets.cluster) = lower(population.cluster)
            as is_ticket_for_cluster,
        tickets.is_approved as is_ticket_approved,
        (tickets.window_start is null or population.executed_at >= tickets.window_start)
        and (tickets.window_end is null or population.executed_at <= tickets.window_end)
            as is_within_change_window
    from population
    inner join tickets
        on population.referenced_ticket_key = tickets.ticket_key

),

window_candidates as (

    -- no key: every approved change ticket for the cluster is a candidate;
    -- the windows containing the statement can cover it, the earliest
    -- opening (then the lowest key) wins. Ranked once, so that the row can
    -- list the covering windows and the nearest ones either side.
    select
        population.item_key,
        approved_change_tickets.ticket_key,
        approved_change_tickets.window_start,
        approved_change_tickets.window_end,
        approved_change_tickets.evidence_id,
        approved_change_tickets.evidence_locator || ' ' || approved_change_tickets.ticket_key
            as ticket_locator,
        coalesce(
            population.executed_at
            between approved_change_tickets.window_start
            and approved_change_tickets.window_end,
            false
        ) as is_covering,
        approved_change_tickets.window_end < population.executed_at as is_before,
        approved_change_tickets.window_start > population.executed_at as is_after,
        count(*) over (partition by population.item_key) as candidate_count,
        row_number() over (
            partition by
                population.item_key,
                coalesce(
                    population.executed_at
                    between approved_change_tickets.window_start
                    and approved_change_tickets.window_end,
                    false
                )
            order by
                approved_change_tickets.window_start asc nulls last,
                approved_change_tickets.ticket_key asc nulls last
        ) as covering_rank,
        row_number() over (
            partition by
                population.item_key,
                approved_change_tickets.window_end < population.executed_at
            order by
                approved_change_tickets.window_end desc nulls first,
                approved_change_tickets.ticket_key asc nulls last
        ) as before_rank,
        row_number() over (
            partition by
                population.item_key,
                approved_change_tickets.window_start > population.executed_at
            order by
                approved_change_tickets.window_start asc nulls last,
                approved_change_tickets.ticket_key asc nulls last
        ) as after_rank
    from population
    inner join approved_change_tickets
        on lower(population.cluster) = lower(approved_change_tickets.cluster)
    where population.referenced_ticket_key is null

),

window_tickets as (

    -- the chosen window and the candidates the row lists: every covering
    -- window, and the nearest window that closed before and that opens
    -- after the statement
    select
        window_candidates.item_key,
        max(window_candidates.ticket_key) filter (
            where window_candidates.is_covering and window_candidates.covering_rank = 1
        ) as ticket_key,
        cast(min(cast(window_candidates.evidence_id as {{ t_text() }})) filter (
            where window_candidates.is_covering and window_candidates.covering_rank = 1
        ) as {{ t_uuid() }}) as evidence_id,
        max(window_candidates.ticket_locator) filter (
            where window_candidates.is_covering and window_candidates.covering_rank = 1
        ) as ticket_locator,
        max(window_candidates.window_start) filter (
            where window_candidates.is_covering and window_candidates.covering_rank = 1
        ) as window_start,
        max(window_candidates.window_end) filter (
            where window_candidates.is_covering and window_candidates.covering_rank = 1
        ) as window_end,
        max(window_candidates.candidate_count)::integer as candidate_count,
        {{ ac_json_objects_agg(
            fields=[
                ['key', 'window_candidates.ticket_key'],
                ['from', utc_text('window_candidates.window_start')],
                ['to', utc_text('window_candidates.window_end')],
                [
                    'chosen',
                    'window_candidates.is_covering and window_candidates.covering_rank = 1',
                ],
                ['why', "case
                    when window_candidates.is_covering and window_candidates.covering_rank = 1
                        then 'window contains the statement; earliest to open'
                    when window_candidates.is_covering
                        then 'window contains the statement; another opened earlier'
                    when window_candidates.is_before
                        then 'nearest window closed before the statement'
                    else 'nearest window opens after the statement'
                end"],
            ],
            order_by=['window_candidates.window_start', 'window_candidates.ticket_key'],
            where="window_candidates.is_covering
            or (window_candidates.is_before and window_candidates.before_rank = 1)
            or (window_candidates.is_after and window_candidates.after_rank = 1)",
        ) }} as candidates
    from window_candidates
    group by window_candidates.item_key

),

change_ticket as (

    -- a ticket is linked to the statement by its key, or by the window
    -- that covers it; no link means no change ticket
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
            else window_tickets.ticket_key is not null
        end as has_change_ticket,
        case
            when population.referenced_ticket_key is not null then explicit_tickets.evidence_id
            else window_tickets.evidence_id
        end as ticket_evidence_id,
        case
            when population.referenced_ticket_key is not null
                then explicit_tickets.ticket_locator
            else window_tickets.ticket_locator
        end as ticket_locator,
        case
            when population.referenced_ticket_key is not null
                then explicit_tickets.window_start
            else window_tickets.window_start
        end as change_window_start,
        case
            when population.referenced_ticket_key is not null
                then explicit_tickets.window_end
            else window_tickets.window_end
        end as change_window_end,
        case
            when population.referenced_ticket_key is null
                then coalesce(window_tickets.candidates, {{ ac_json_empty_array() }})
        end as candidates,
        case
            when population.referenced_ticket_key is null
                then coalesce(window_tickets.candidate_count, 0)
        end as candidate_count
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

    -- only a linked ticket has a window the statement can miss; a window
    -- that linked the statement contains it by construction
    select
        population.item_key,
        case
            when population.referenced_ticket_key is not null
                then explicit_tickets.is_within_change_window
            when window_tickets.ticket_key is not null then true
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

searched as (

    -- NO_CHANGE_TICKET claims no ticket links the statement: it searched
    -- every ticket object of the run
    select
        reasons.item_key,
        {{ searched_population(
            'reasons.exception_reasons', ['NO_CHANGE_TICKET'], "'tickets'"
        ) }} as searched_population
    from reasons

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
        change_ticket.ticket_locator,
        change_ticket.change_window_start,
        change_ticket.change_window_end,
        -- JSON text: the canonical result form has no jsonb encoding
        cast(change_ticket.candidates as {{ t_text() }}) as candidates,
        change_ticket.candidate_count,
        change_ticket.has_change_ticket,
        ticket_for_cluster.is_ticket_for_cluster,
        ticket_approved.is_ticket_approved,
        within_change_window.is_within_change_window,
        {{ control_result('reasons.exception_reasons') }} as result,
        reasons.exception_reasons,
        searched.searched_population,
        population_sizes.searched_count,
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
    inner join searched
        on population.item_key = searched.item_key
    left join population_sizes
        on searched.searched_population = population_sizes.population_key

)

select * from final
