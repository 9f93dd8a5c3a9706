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

final as (

    select distinct on (in_quarter.identity)
        in_quarter.identity,
        in_quarter.deactivated_at,
        in_quarter.event_name as deactivation_event,
        in_quarter.source_name,
        in_quarter.run_id,
        in_quarter.evidence_id,
        in_quarter.evidence_locator
    from in_quarter
    order by
        in_quarter.identity,
        in_quarter.deactivated_at,
        in_quarter.evidence_id,
        in_quarter.evidence_locator

)

select * from final
