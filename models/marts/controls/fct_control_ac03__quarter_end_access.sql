-- AC-03 Quarter-end access listing.
-- Question: at quarter end, is every role held by a login role on an
-- in-scope cluster a known role, held by an active identity, and, when
-- privileged, backed by an approval on record? And, when the run has a user
-- access review (`access_review:` in soxtrail.yml), did the role's owner
-- decide on it in time, someone other than its holder, and was a removal
-- carried out?

{%- set deadline = var('access_review_deadline', none) %}
{%- if deadline and not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', deadline | string) %}
    {{ exceptions.raise_compiler_error(
        "var access_review_deadline: not a date (YYYY-MM-DD): " ~ deadline) }}
{%- endif %}

with

catalog_holdings as (

    select * from {{ ref('int_role_holdings_catalogued') }}

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

deactivated_identities as (

    select * from {{ ref('int_identities_deactivated') }}

),

tickets as (

    select * from {{ ref('stg_tickets__tickets') }}

),

run_sources as (

    select * from {{ ref('stg_soxtrail__run_sources') }}

),

access_reviews as (

    select * from {{ ref('stg_reviews__access_reviews') }}

),

catalog_captures as (

    -- when each catalog object was taken: the server's now() its capture
    -- recorded (`unknown` for an export that says not when)
    select
        evidence.id as evidence_id,
        case
            when {{ re_match(json_text('evidence.query_params', ['server_now']), "'^[0-9]{4}-'") }}
                then cast(
                    {{ json_text('evidence.query_params', ['server_now']) }}
                    as {{ t_timestamptz() }}
                )
        end as captured_at
    from {{ source('soxtrail', 'sox_evidence') }} as evidence
    where
        {{ this_run('evidence') }}
        and evidence.source_system = 'db_catalog'

),

held_roles as (

    -- what login roles hold at quarter end; LOGIN itself is not access to list
    select
        catalog_holdings.cluster,
        catalog_holdings.login_role,
        catalog_holdings.role as granted_role,
        catalog_holdings.evidence_id,
        catalog_holdings.evidence_locator
    from catalog_holdings
    where
        catalog_holdings.can_login
        and not (catalog_holdings.holding_kind = 'attribute' and catalog_holdings.role = 'LOGIN')

),

held_items as (

    select
        held_roles.cluster || '|' || held_roles.login_role || '|' || held_roles.granted_role
            as item_key,
        held_roles.cluster,
        held_roles.login_role,
        coalesce(identity_mappings.identity, lower(held_roles.login_role)) as holder_identity,
        coalesce(identity_mappings.identity_type, 'person') as holder_identity_type,
        identity_mappings.approval_ref,
        identity_mappings.evidence_id as identity_map_evidence_id,
        held_roles.granted_role,
        held_roles.evidence_id,
        held_roles.evidence_locator
    from held_roles
    inner join scoped_clusters
        on held_roles.cluster = scoped_clusters.cluster
    left join identity_mappings
        on lower(held_roles.login_role) = lower(identity_mappings.login_role)

),

ranked_held_items as (

    select
        held_items.*,
        row_number() over (
            partition by held_items.item_key
            order by held_items.evidence_locator asc nulls last
        ) as item_rank
    from held_items

),

population as (

    -- one row per item: the first holding by locator
    select
        ranked_held_items.item_key,
        ranked_held_items.cluster,
        ranked_held_items.login_role,
        ranked_held_items.holder_identity,
        ranked_held_items.holder_identity_type,
        ranked_held_items.approval_ref,
        ranked_held_items.identity_map_evidence_id,
        ranked_held_items.granted_role,
        ranked_held_items.evidence_id,
        ranked_held_items.evidence_locator
    from ranked_held_items
    where ranked_held_items.item_rank = 1

),

role_catalog_entries as (

    -- the catalog entries matching each item's role on its cluster; the
    -- first by locator gives the owner (an unknown role: one row of nulls)
    select
        population.item_key,
        population.granted_role,
        role_catalog.role_name,
        role_catalog.is_privileged,
        first_value(role_catalog.evidence_id) over (
            partition by population.item_key
            order by role_catalog.evidence_locator asc nulls last
            rows between unbounded preceding and unbounded following
        ) as first_evidence_id,
        first_value(role_catalog.owner) over (
            partition by population.item_key
            order by role_catalog.evidence_locator asc nulls last
            rows between unbounded preceding and unbounded following
        ) as first_owner
    from population
    left join role_catalog
        on
            lower(population.granted_role) = lower(role_catalog.role_name)
            and {{ glob_match('population.cluster', 'role_catalog.cluster_pattern') }}

),

role_in_catalog as (

    -- an unknown role on a cluster is an exception, not an error
    select
        role_catalog_entries.item_key,
        count(role_catalog_entries.role_name) > 0 as has_role_catalog_entry,
        role_catalog_entries.granted_role in ('SUPERUSER', 'CREATEROLE')
        or coalesce(bool_or(role_catalog_entries.is_privileged), false) as is_privileged_role,
        role_catalog_entries.first_evidence_id as role_catalog_evidence_id,
        role_catalog_entries.first_owner as role_owner
    from role_catalog_entries
    group by
        role_catalog_entries.item_key,
        role_catalog_entries.granted_role,
        role_catalog_entries.first_evidence_id,
        role_catalog_entries.first_owner

),

holder_active as (

    select
        population.item_key,
        deactivated_identities.identity is null as is_holder_active,
        deactivated_identities.evidence_id as deactivation_evidence_id
    from population
    left join deactivated_identities
        on population.holder_identity = deactivated_identities.identity

),

approving_tickets as (

    -- the latest approved access ticket from before quarter end per item (ties:
    -- lowest ticket key); one hash join instead of a ticket scan per item
    select
        population.item_key,
        tickets.ticket_key,
        tickets.evidence_id,
        row_number() over (
            partition by population.item_key
            order by tickets.approved_at desc nulls first, tickets.ticket_key asc nulls last
        ) as approval_rank
    from population
    inner join tickets
        on
            population.holder_identity = tickets.subject_user
            and lower(population.cluster) = lower(tickets.cluster)
            and lower(population.granted_role) = lower(tickets.role)
    where
        tickets.ticket_type = 'access'
        and tickets.is_approved
        and tickets.approved_at < {{ quarter_end_at() }}

),

approval_on_record as (

    -- privileged access needs a standing approval (identity map
    -- approval_ref) or an approved access ticket from before quarter end
    select
        population.item_key,
        case
            when role_in_catalog.is_privileged_role
                then population.approval_ref is not null or approving_tickets.ticket_key is not null
        end as has_approval_on_record,
        approving_tickets.ticket_key as approval_ticket_key,
        approving_tickets.evidence_id as approval_ticket_evidence_id
    from population
    inner join role_in_catalog
        on population.item_key = role_in_catalog.item_key
    left join approving_tickets
        on
            population.item_key = approving_tickets.item_key
            and approving_tickets.approval_rank = 1

),

review_configured as (

    -- the review rules apply only to a run whose config names `access_review`
    select count(*) > 0 as is_review_configured
    from run_sources
    where run_sources.connector = 'access_review'

),

review_decisions as (

    -- the latest decision on each item across the review files (ties: the
    -- first by file name, then line); an undecided row decides nothing
    select
        access_reviews.item_key,
        access_reviews.review_decision,
        access_reviews.reviewer,
        access_reviews.reviewed_at,
        access_reviews.evidence_id,
        access_reviews.evidence_locator,
        row_number() over (
            partition by access_reviews.item_key
            order by
                access_reviews.reviewed_at desc nulls first,
                access_reviews.review_file asc nulls last,
                access_reviews.review_line asc nulls last
        ) as decision_rank
    from access_reviews
    where access_reviews.review_decision is not null

),

review_on_record as (

    -- a removal is due `access_review_removal_grace_days` after its decision;
    -- a review is late from the local day after `access_review_deadline` (by
    -- default `access_review_due_days` after the quarter's last local day)
    select
        population.item_key,
        review_configured.is_review_configured,
        review_decisions.review_decision,
        review_decisions.reviewer,
        review_decisions.reviewed_at,
        review_decisions.evidence_id as review_evidence_id,
        review_decisions.evidence_locator as review_locator,
        case
            when review_decisions.review_decision = 'remove'
                then
                    review_decisions.reviewed_at
                    + {{ interval_days(var('access_review_removal_grace_days') | int) }}
        end as removal_due_at,
        catalog_captures.captured_at as catalog_captured_at,
        {% if deadline -%}
            {{ local_day_start("date '" ~ deadline ~ "' + 1") }}
        {%- else -%}
            {{ local_day_start(
                local_date(quarter_end_at()) ~ ' + ' ~ (var('access_review_due_days') | int)
            ) }}
        {%- endif %} as review_late_from
    from population
    cross join review_configured
    left join review_decisions
        on
            review_configured.is_review_configured
            and population.item_key = review_decisions.item_key
            and review_decisions.decision_rank = 1
    left join catalog_captures
        on population.evidence_id = catalog_captures.evidence_id

),

reasons as (

    -- every reason code whose test fails, sorted; empty when the item passes
    select
        population.item_key,
        {{ exception_reasons({
            'UNKNOWN_ROLE': 'not role_in_catalog.has_role_catalog_entry',
            'INACTIVE_HOLDER': 'not holder_active.is_holder_active',
            'NO_APPROVAL_ON_RECORD': 'not approval_on_record.has_approval_on_record',
            'REVIEW_MISSING':
                'review_on_record.is_review_configured'
                ~ ' and review_on_record.review_decision is null',
            'REVIEWER_IS_HOLDER':
                'lower(review_on_record.reviewer) = lower(population.holder_identity)',
            'REMOVE_NOT_ACTIONED':
                "review_on_record.review_decision = 'remove'"
                ~ ' and review_on_record.catalog_captured_at'
                ~ ' > review_on_record.removal_due_at',
            'REVIEW_LATE':
                'review_on_record.reviewed_at >= review_on_record.review_late_from',
        }) }} as exception_reasons
    from population
    inner join role_in_catalog
        on population.item_key = role_in_catalog.item_key
    inner join holder_active
        on population.item_key = holder_active.item_key
    inner join approval_on_record
        on population.item_key = approval_on_record.item_key
    inner join review_on_record
        on population.item_key = review_on_record.item_key

),

population_sizes as (

    {{ searched_population_sizes() }}

),

searched as (

    -- an absence claim searched a whole population: NO_APPROVAL_ON_RECORD
    -- every ticket object, UNKNOWN_ROLE the role catalog (the two never meet:
    -- only a catalogued role is privileged), REVIEW_MISSING every review file
    -- (named when it is the item's only absence claim)
    select
        reasons.item_key,
        coalesce(
            {{ searched_population(
                'reasons.exception_reasons', ['NO_APPROVAL_ON_RECORD'], "'tickets'"
            ) }},
            {{ searched_population(
                'reasons.exception_reasons', ['UNKNOWN_ROLE'], "'role_catalog'"
            ) }},
            {{ searched_population(
                'reasons.exception_reasons', ['REVIEW_MISSING'], "'access_review'"
            ) }}
        ) as searched_population
    from reasons

),

final as (

    select
        {{ run_id() }} as run_id,
        'AC-03' as control_id,
        population.item_key,
        population.cluster,
        population.login_role,
        population.holder_identity,
        population.holder_identity_type,
        population.granted_role,
        role_in_catalog.role_owner,
        role_in_catalog.is_privileged_role,
        population.approval_ref,
        approval_on_record.approval_ticket_key,
        role_in_catalog.has_role_catalog_entry,
        holder_active.is_holder_active,
        approval_on_record.has_approval_on_record,
        review_on_record.review_decision,
        review_on_record.reviewer,
        review_on_record.reviewed_at,
        review_on_record.review_locator,
        review_on_record.removal_due_at,
        {{ control_result('reasons.exception_reasons') }} as result,
        reasons.exception_reasons,
        cast(null as {{ t_text() }}) as candidates,
        null::integer as candidate_count,
        searched.searched_population,
        population_sizes.searched_count,
        population.evidence_id,
        population.evidence_locator,
        {{ sorted_uuids([
            'role_in_catalog.role_catalog_evidence_id',
            'population.identity_map_evidence_id',
            'holder_active.deactivation_evidence_id',
            'approval_on_record.approval_ticket_evidence_id',
            'review_on_record.review_evidence_id',
        ]) }} as supporting_evidence_ids,
        {{ control_evidence_id() }} as control_evidence_id
    from population
    inner join role_in_catalog
        on population.item_key = role_in_catalog.item_key
    inner join holder_active
        on population.item_key = holder_active.item_key
    inner join approval_on_record
        on population.item_key = approval_on_record.item_key
    inner join reasons
        on population.item_key = reasons.item_key
    inner join review_on_record
        on population.item_key = review_on_record.item_key
    inner join searched
        on population.item_key = searched.item_key
    left join population_sizes
        on searched.searched_population = population_sizes.population_key

)

select * from final
