-- AC-01 Privileged access approved.
-- Question: was every privileged grant on an in-scope cluster this quarter
-- backed by an access ticket approved, before the grant and within its
-- validity, by someone other than the grantee, the requester and the person
-- who ran the grant?

with

grants as (

    select * from {{ ref('int_role_grants_parsed') }}

),

ticket_keys as (

    select * from {{ ref('int_ticket_keys_extracted') }}

),

scoped_clusters as (

    select * from {{ ref('int_clusters_scoped') }}

),

role_catalog as (

    select * from {{ ref('stg_catalogs__roles') }}

),

identity_mappings as (

    select * from {{ ref('stg_catalogs__identity_mappings') }}

),

tickets as (

    select * from {{ ref('stg_tickets__tickets') }}

),

granted_roles as (

    select distinct
        grants.cluster,
        grants.granted_role
    from grants

),

catalog_privileged_roles as (

    -- the first privileged role-catalog entry (by locator) matching each
    -- role and cluster granted: ranked once, not looked up per grant
    select
        granted_roles.cluster,
        granted_roles.granted_role,
        role_catalog.evidence_id,
        row_number() over (
            partition by granted_roles.cluster, granted_roles.granted_role
            order by role_catalog.evidence_locator asc nulls last
        ) as catalog_rank
    from granted_roles
    inner join role_catalog
        on
            lower(role_catalog.role_name) = lower(granted_roles.granted_role)
            and {{ glob_match('granted_roles.cluster', 'role_catalog.cluster_pattern') }}
            and role_catalog.is_privileged

),

privileged_grants as (

    -- SUPERUSER / CREATEROLE are privileged by definition; other roles when
    -- a role-catalog entry matching the cluster says so
    select
        grants.*,
        case
            when grants.granted_role in ('SUPERUSER', 'CREATEROLE')
                then cast(null as {{ t_uuid() }})
            else catalog_privileged_roles.evidence_id
        end as role_catalog_evidence_id
    from grants
    inner join scoped_clusters
        on grants.cluster = scoped_clusters.cluster
    left join catalog_privileged_roles
        on
            grants.cluster = catalog_privileged_roles.cluster
            and grants.granted_role = catalog_privileged_roles.granted_role
            and catalog_privileged_roles.catalog_rank = 1
    where
        grants.granted_at >= {{ quarter_start_at() }}
        and grants.granted_at < {{ quarter_end_at() }}
        and (
            grants.granted_role in ('SUPERUSER', 'CREATEROLE')
            or catalog_privileged_roles.catalog_rank is not null
        )

),

grant_items as (

    -- one row per item (grantee, role, second): the first entry by locator
    select
        privileged_grants.cluster
        || '|' || privileged_grants.grantee
        || '|' || privileged_grants.granted_role
        || '|' || {{ utc_text('privileged_grants.granted_at') }}
            as item_key,
        privileged_grants.cluster,
        privileged_grants.grantee,
        coalesce(grantee_mappings.identity, lower(privileged_grants.grantee)) as grantee_identity,
        privileged_grants.granted_role,
        privileged_grants.grant_kind,
        privileged_grants.granted_at,
        privileged_grants.granted_by,
        coalesce(
            granter_mappings.identity, lower(privileged_grants.granted_by)
        ) as granted_by_identity,
        privileged_grants.statement_text as grant_statement,
        ticket_keys.ticket_key as referenced_ticket_key,
        privileged_grants.role_catalog_evidence_id,
        privileged_grants.evidence_id,
        privileged_grants.evidence_locator
    from privileged_grants
    left join ticket_keys
        on privileged_grants.audit_entry_id = ticket_keys.audit_entry_id
    left join identity_mappings as grantee_mappings
        on lower(privileged_grants.grantee) = lower(grantee_mappings.login_role)
    left join identity_mappings as granter_mappings
        on lower(privileged_grants.granted_by) = lower(granter_mappings.login_role)

),

ranked_grant_items as (

    select
        grant_items.*,
        row_number() over (
            partition by grant_items.item_key
            order by grant_items.evidence_locator asc nulls last
        ) as item_rank
    from grant_items

),

population as (

    select
        ranked_grant_items.item_key,
        ranked_grant_items.cluster,
        ranked_grant_items.grantee,
        ranked_grant_items.grantee_identity,
        ranked_grant_items.granted_role,
        ranked_grant_items.grant_kind,
        ranked_grant_items.granted_at,
        ranked_grant_items.granted_by,
        ranked_grant_items.granted_by_identity,
        ranked_grant_items.grant_statement,
        ranked_grant_items.referenced_ticket_key,
        ranked_grant_items.role_catalog_evidence_id,
        ranked_grant_items.evidence_id,
        ranked_grant_items.evidence_locator
    from ranked_grant_items
    where ranked_grant_items.item_rank = 1

),

implicit_candidates as (

    -- no usable key: every access ticket for this user, cluster and role is
    -- a candidate; the one most recently approved at or before the grant
    -- wins, else the most recent one (ranked once, listed on the row)
    select
        population.item_key,
        tickets.ticket_key,
        tickets.approved_at,
        tickets.window_start,
        tickets.window_end,
        coalesce(
            tickets.is_approved and tickets.approved_at <= population.granted_at, false
        ) as is_approved_by_grant,
        row_number() over (
            partition by population.item_key
            order by
                coalesce(
                    tickets.is_approved and tickets.approved_at <= population.granted_at, false
                ) desc,
                coalesce(tickets.approved_at, tickets.window_start, tickets.window_end)
                desc nulls last,
                tickets.ticket_key desc nulls first
        ) as candidate_rank,
        count(*) over (partition by population.item_key) as candidate_count
    from population
    inner join tickets
        on
            tickets.ticket_type = 'access'
            and population.grantee_identity = tickets.subject_user
            and lower(tickets.cluster) = lower(population.cluster)
            and lower(tickets.role) = lower(population.granted_role)

),

implicit_matches as (

    -- the chosen candidate, and every candidate with why it won or lost
    select
        implicit_candidates.item_key,
        max(implicit_candidates.ticket_key) filter (
            where implicit_candidates.candidate_rank = 1
        ) as ticket_key,
        max(implicit_candidates.candidate_count)::integer as candidate_count,
        {{ ac_json_objects_agg(
            fields=[
                ['key', 'implicit_candidates.ticket_key'],
                ['at', utc_text('implicit_candidates.approved_at')],
                ['from', utc_text('implicit_candidates.window_start')],
                ['to', utc_text('implicit_candidates.window_end')],
                ['chosen', 'implicit_candidates.candidate_rank = 1'],
                ['why', "case
                    when
                        implicit_candidates.candidate_rank = 1
                        and implicit_candidates.is_approved_by_grant
                        then 'most recent approval at or before the grant'
                    when implicit_candidates.candidate_rank = 1
                        then 'none approved at or before the grant: the most recent'
                    when implicit_candidates.is_approved_by_grant
                        then 'approved at or before the grant, before the chosen one'
                    else 'not approved at or before the grant'
                end"],
            ],
            order_by=['implicit_candidates.candidate_rank'],
        ) }} as candidates
    from implicit_candidates
    group by implicit_candidates.item_key

),

ticket_matched as (

    -- an explicit key selects its ticket; a key naming no known ticket
    -- falls back to the implicit match
    select
        population.item_key,
        coalesce(explicit_tickets.ticket_key, implicit_tickets.ticket_key) as ticket_key,
        case
            when explicit_tickets.ticket_key is not null then 'explicit'
            when implicit_tickets.ticket_key is not null then 'implicit'
        end as ticket_match,
        -- the candidates of an implicit match; an explicit key picks nothing
        case
            when explicit_tickets.ticket_key is null
                then coalesce(implicit_matches.candidates, {{ ac_json_empty_array() }})
        end as candidates,
        case
            when explicit_tickets.ticket_key is null
                then coalesce(implicit_matches.candidate_count, 0)
        end as candidate_count,
        coalesce(explicit_tickets.ticket_key, implicit_tickets.ticket_key) is not null
            as has_ticket,
        -- a referenced ticket raised for another cluster does not cover this one
        case
            when explicit_tickets.ticket_key is not null
                then
                    explicit_tickets.cluster is null
                    or lower(explicit_tickets.cluster) = lower(population.cluster)
            when implicit_tickets.ticket_key is not null then true
        end as is_ticket_for_cluster
    from population
    left join tickets as explicit_tickets
        on population.referenced_ticket_key = explicit_tickets.ticket_key
    left join implicit_matches
        on population.item_key = implicit_matches.item_key
    left join tickets as implicit_tickets
        on implicit_matches.ticket_key = implicit_tickets.ticket_key

),

matched_tickets as (

    select
        ticket_matched.item_key,
        tickets.*
    from ticket_matched
    inner join tickets
        on ticket_matched.ticket_key = tickets.ticket_key

),

approved_before_grant as (

    -- approval must precede the grant: access granted first and approved
    -- later was not authorised when it was used
    select
        population.item_key,
        matched_tickets.is_approved as is_ticket_approved,
        case
            when matched_tickets.is_approved
                then matched_tickets.approved_at <= population.granted_at
        end as is_approved_before_grant
    from population
    left join matched_tickets
        on population.item_key = matched_tickets.item_key

),

within_validity_window as (

    -- an approval authorises a grant for a limited time: the ticket's window
    -- end, else approval_validity_days after the approval
    select
        population.item_key,
        coalesce(
            matched_tickets.window_end,
            matched_tickets.approved_at
            + {{ interval_days(var("approval_validity_days") | int) }}
        ) as validity_ends_at,
        case
            when matched_tickets.is_approved
                then population.granted_at <= coalesce(
                    matched_tickets.window_end,
                    matched_tickets.approved_at
                    + {{ interval_days(var("approval_validity_days") | int) }}
                )
        end as is_within_validity_window
    from population
    left join matched_tickets
        on population.item_key = matched_tickets.item_key

),

approver_independent as (

    -- segregation of duties: nobody approves their own access, their own
    -- request, or a grant they run themselves
    select
        population.item_key,
        matched_tickets.approver <> population.grantee_identity as is_approver_not_grantee,
        matched_tickets.approver <> matched_tickets.requester as is_approver_not_requester,
        matched_tickets.approver <> population.granted_by_identity as is_approver_not_granter
    from population
    left join matched_tickets
        on population.item_key = matched_tickets.item_key

),

tested as (

    select
        population.*,
        ticket_matched.ticket_key,
        ticket_matched.ticket_match,
        matched_tickets.status as ticket_status,
        matched_tickets.requester,
        matched_tickets.approver,
        matched_tickets.approved_at,
        within_validity_window.validity_ends_at,
        matched_tickets.evidence_locator || ' ' || matched_tickets.ticket_key as ticket_locator,
        -- JSON text: the canonical result form has no jsonb encoding
        cast(ticket_matched.candidates as {{ t_text() }}) as candidates,
        ticket_matched.candidate_count,
        ticket_matched.has_ticket,
        ticket_matched.is_ticket_for_cluster,
        approved_before_grant.is_ticket_approved,
        approved_before_grant.is_approved_before_grant,
        within_validity_window.is_within_validity_window,
        approver_independent.is_approver_not_grantee,
        approver_independent.is_approver_not_requester,
        approver_independent.is_approver_not_granter,
        {{ exception_reasons({
            'NO_TICKET': 'not ticket_matched.has_ticket',
            'TICKET_CLUSTER_MISMATCH': 'not ticket_matched.is_ticket_for_cluster',
            'NOT_APPROVED': 'not approved_before_grant.is_ticket_approved',
            'APPROVED_AFTER_GRANT': 'not approved_before_grant.is_approved_before_grant',
            'APPROVAL_EXPIRED': 'not within_validity_window.is_within_validity_window',
            'SELF_APPROVAL': 'not approver_independent.is_approver_not_grantee',
            'APPROVER_IS_REQUESTER': 'not approver_independent.is_approver_not_requester',
            'APPROVER_RAN_GRANT': 'not approver_independent.is_approver_not_granter',
        }) }} as exception_reasons,
        matched_tickets.evidence_id as ticket_evidence_id
    from population
    inner join ticket_matched
        on population.item_key = ticket_matched.item_key
    inner join approved_before_grant
        on population.item_key = approved_before_grant.item_key
    inner join within_validity_window
        on population.item_key = within_validity_window.item_key
    inner join approver_independent
        on population.item_key = approver_independent.item_key
    left join matched_tickets
        on population.item_key = matched_tickets.item_key

),

population_sizes as (

    {{ searched_population_sizes() }}

),

searched as (

    -- NO_TICKET claims no ticket: it searched every ticket object of the run
    select
        tested.item_key,
        {{ searched_population(
            'tested.exception_reasons', ['NO_TICKET'], "'tickets'"
        ) }} as searched_population
    from tested

),

final as (

    select
        {{ run_id() }} as run_id,
        'AC-01' as control_id,
        tested.item_key,
        tested.cluster,
        tested.grantee,
        tested.grantee_identity,
        tested.granted_role,
        tested.grant_kind,
        tested.granted_at,
        tested.granted_by,
        tested.granted_by_identity,
        tested.grant_statement,
        tested.referenced_ticket_key,
        tested.ticket_key,
        tested.ticket_match,
        tested.ticket_status,
        tested.requester,
        tested.approver,
        tested.approved_at,
        tested.validity_ends_at,
        tested.validity_ends_at as approval_valid_until,
        tested.ticket_locator,
        tested.candidates,
        tested.candidate_count,
        tested.has_ticket,
        tested.is_ticket_for_cluster,
        tested.is_ticket_approved,
        tested.is_approved_before_grant,
        tested.is_within_validity_window,
        tested.is_approver_not_grantee,
        tested.is_approver_not_requester,
        tested.is_approver_not_granter,
        {{ control_result('tested.exception_reasons') }} as result,
        tested.exception_reasons,
        searched.searched_population,
        population_sizes.searched_count,
        tested.evidence_id,
        tested.evidence_locator,
        {{ sorted_uuids(['tested.ticket_evidence_id', 'tested.role_catalog_evidence_id']) }}
            as supporting_evidence_ids,
        {{ control_evidence_id() }} as control_evidence_id
    from tested
    inner join searched
        on tested.item_key = searched.item_key
    left join population_sizes
        on searched.searched_population = population_sizes.population_key

)

select * from final
