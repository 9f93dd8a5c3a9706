-- Each identity deactivated during the quarter, at its earliest in-quarter
-- deactivation event (CloudTrail, Okta or HR file, whichever came first).

with

deactivations as (

    select * from {{ ref('stg_iam__deactivations') }}

),

in_quarter as (

    select deactivations.*
    from deactivations
    where
        deactivations.deactivated_at >= {{ quarter_start_at() }}
        and deactivations.deactivated_at < {{ quarter_end_at() }}

),

ranked as (

    select
        in_quarter.*,
        row_number() over (
            partition by in_quarter.identity
            order by
                in_quarter.deactivated_at asc nulls last,
                in_quarter.evidence_id asc nulls last,
                in_quarter.evidence_locator asc nulls last
        ) as deactivation_rank
    from in_quarter

),

final as (

    select
        ranked.identity,
        ranked.deactivated_at,
        ranked.event_name as deactivation_event,
        ranked.source_name,
        ranked.run_id,
        ranked.evidence_id,
        ranked.evidence_locator
    from ranked
    where ranked.deactivation_rank = 1

)

select * from final
