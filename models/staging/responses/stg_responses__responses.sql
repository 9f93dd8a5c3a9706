-- Management's responses to exceptions. The load refused every malformed
-- response (a waiver without an approver other than its owner, or without an
-- expiry; a date that is not one), so the dates here are well formed.

with

responses as (

    select * from {{ source('responses', 'responses') }} as responses
    where {{ this_run('responses') }}

),

final as (

    select
        btrim(responses.control_id) as control_id,
        btrim(responses.item_key) as item_key,
        responses.root_cause,
        responses.remediation,
        responses.owner,
        responses.due_date::date as due_date,
        responses.status as response_status,
        responses.compensating_control,
        responses.approver,
        responses.expires_on::date as expires_on,
        {{ carry_evidence('responses') }}
    from responses

)

select * from final
