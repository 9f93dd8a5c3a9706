-- Who held which role when: for every (cluster, login role, role) the run
-- knows of, the periods between its role events, each decided by one event.
-- The rule, for any moment:
--   * the last event at or before the moment decides: a grant means held,
--     a revocation not held;
--   * with none before it, the first event after it decides: a revocation
--     means the role was held until then, a grant that it was not;
--   * with no event at all, the quarter-end catalog decides: held.
-- Events of a (cluster, login role, role): its own grants and revocations,
-- and the revocations that take every role of the login role. At the same
-- instant revocations come before grants, so a role revoked and granted at
-- one instant ends up held. Only login roles that can log in are listed from
-- the catalog (an access list is about who can log in).

with

catalog_holdings as (

    select * from {{ ref('int_role_holdings_catalogued') }}

),

role_events as (

    select * from {{ ref('int_role_events_unioned') }}

),

ranked_catalog as (

    select
        catalog_holdings.*,
        row_number() over (
            partition by
                catalog_holdings.cluster,
                catalog_holdings.login_role,
                catalog_holdings.role
            order by
                catalog_holdings.evidence_locator asc nulls last,
                catalog_holdings.evidence_id asc nulls last
        ) as catalog_rank
    from catalog_holdings
    where catalog_holdings.can_login

),

login_catalog as (

    -- the catalog row a holding cites: one per (cluster, login role, role)
    select
        ranked_catalog.cluster,
        ranked_catalog.login_role,
        ranked_catalog.role,
        ranked_catalog.evidence_id,
        ranked_catalog.evidence_locator
    from ranked_catalog
    where ranked_catalog.catalog_rank = 1

),

timed_events as (

    -- an event without a time cannot be placed on the timeline
    select role_events.*
    from role_events
    where role_events.event_at is not null

),

holding_keys as (

    select
        login_catalog.cluster,
        login_catalog.login_role,
        login_catalog.role
    from login_catalog
    union
    select
        timed_events.cluster,
        timed_events.login_role,
        timed_events.role
    from timed_events

),

sequenced_events as (

    select
        holding_keys.cluster,
        holding_keys.login_role,
        holding_keys.role,
        timed_events.event_kind,
        timed_events.event_detail,
        timed_events.is_every_role,
        timed_events.event_at,
        timed_events.event_by,
        timed_events.statement_text,
        timed_events.evidence_id,
        timed_events.evidence_locator,
        row_number() over (
            partition by holding_keys.cluster, holding_keys.login_role, holding_keys.role
            order by
                timed_events.event_at asc nulls last,
                timed_events.event_kind = 'grant' asc nulls last,
                timed_events.is_every_role desc nulls first,
                timed_events.evidence_locator asc nulls last,
                timed_events.evidence_id asc nulls last,
                timed_events.event_detail asc nulls last,
                timed_events.statement_text asc nulls last
        ) as event_sequence
    from holding_keys
    inner join timed_events
        on
            holding_keys.cluster = timed_events.cluster
            and holding_keys.login_role = timed_events.login_role
    where
        timed_events.role = holding_keys.role
        or timed_events.is_every_role

),

streaked_events as (

    -- a streak: the grants since the last revocation (and that revocation)
    select
        sequenced_events.*,
        lead(sequenced_events.event_at) over key_timeline as next_event_at,
        count(*) filter (where sequenced_events.event_kind = 'revoke') over key_timeline
            as streak_sequence
    from sequenced_events
    window key_timeline as (
        partition by
            sequenced_events.cluster,
            sequenced_events.login_role,
            sequenced_events.role
        order by sequenced_events.event_sequence
    )

),

held_since as (

    select
        streaked_events.*,
        min(streaked_events.event_at) filter (where streaked_events.event_kind = 'grant') over (
            partition by
                streaked_events.cluster,
                streaked_events.login_role,
                streaked_events.role,
                streaked_events.streak_sequence
        ) as streak_started_at
    from streaked_events

),

event_periods as (

    -- from each event until the next one, that event decides
    select
        held_since.cluster,
        held_since.login_role,
        held_since.role,
        held_since.event_sequence as period_sequence,
        held_since.event_at as valid_from,
        held_since.next_event_at as valid_to,
        held_since.event_kind = 'grant' as is_held,
        held_since.event_kind as decided_by,
        case when held_since.event_kind = 'grant' then held_since.streak_started_at end
            as held_since_at,
        held_since.event_kind,
        held_since.event_detail,
        held_since.is_every_role,
        held_since.event_at,
        held_since.event_by,
        held_since.statement_text,
        held_since.evidence_id as event_evidence_id,
        held_since.evidence_locator as event_evidence_locator
    from held_since

),

leading_periods as (

    -- before the first event, the first event decides: it was held only if
    -- that event takes it away
    select
        held_since.cluster,
        held_since.login_role,
        held_since.role,
        0 as period_sequence,
        cast(null as {{ t_timestamptz() }}) as valid_from,
        held_since.event_at as valid_to,
        held_since.event_kind = 'revoke' as is_held,
        'later_' || held_since.event_kind as decided_by,
        cast(null as {{ t_timestamptz() }}) as held_since_at,
        held_since.event_kind,
        held_since.event_detail,
        held_since.is_every_role,
        held_since.event_at,
        held_since.event_by,
        held_since.statement_text,
        held_since.evidence_id as event_evidence_id,
        held_since.evidence_locator as event_evidence_locator
    from held_since
    where held_since.event_sequence = 1

),

catalog_periods as (

    -- no event at all: the quarter-end catalog decides, at every moment
    select
        login_catalog.cluster,
        login_catalog.login_role,
        login_catalog.role,
        0 as period_sequence,
        cast(null as {{ t_timestamptz() }}) as valid_from,
        cast(null as {{ t_timestamptz() }}) as valid_to,
        true as is_held,
        'catalog' as decided_by,
        cast(null as {{ t_timestamptz() }}) as held_since_at,
        null as event_kind,
        null as event_detail,
        null::boolean as is_every_role,
        cast(null as {{ t_timestamptz() }}) as event_at,
        null as event_by,
        null as statement_text,
        cast(null as {{ t_uuid() }}) as event_evidence_id,
        null as event_evidence_locator
    from login_catalog
    left join sequenced_events
        on
            login_catalog.cluster = sequenced_events.cluster
            and login_catalog.login_role = sequenced_events.login_role
            and login_catalog.role = sequenced_events.role
    where sequenced_events.cluster is null

),

periods as (

    select * from event_periods
    union all
    select * from leading_periods
    union all
    select * from catalog_periods

),

final as (

    select
        periods.cluster || '|' || periods.login_role || '|' || periods.role
        || '|' || cast(periods.period_sequence as {{ t_text() }}) as period_key,
        periods.cluster,
        periods.login_role,
        periods.role,
        periods.period_sequence,
        periods.valid_from,
        periods.valid_to,
        periods.is_held,
        periods.decided_by,
        periods.held_since_at,
        login_catalog.cluster is not null as is_in_catalog,
        periods.event_kind,
        periods.event_detail,
        periods.is_every_role,
        periods.event_at,
        periods.event_by,
        periods.statement_text,
        periods.event_evidence_id,
        periods.event_evidence_locator,
        login_catalog.evidence_id as catalog_evidence_id,
        login_catalog.evidence_locator as catalog_evidence_locator
    from periods
    left join login_catalog
        on
            periods.cluster = login_catalog.cluster
            and periods.login_role = login_catalog.login_role
            and periods.role = login_catalog.role

)

select * from final
