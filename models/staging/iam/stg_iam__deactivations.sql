-- One row per IAM event that ends a person's access: CloudTrail DeleteUser /
-- DeleteLoginProfile, Okta user deactivation / suspension, HR file rows.

with

iam_events as (

    select * from {{ source('iam', 'iam_events') }} as iam_events
    where {{ this_run_or_included('iam_events') }}

),

included as (

    select * from {{ ref('stg_soxtrail__included_evidence') }}

),

okta_events_latest as (

    -- Okta keeps its System Log ~90 days: the run's own capture and the quarter's
    -- mid-quarter captures it includes are read together; an event (its `uuid`)
    -- captured more than once counts once, in its latest capture
    select
        iam_events.*,
        {{ latest_capture_rank('iam_events', 'uuid') }} as capture_rank
    from iam_events
    left join included
        on iam_events.evidence_id = included.included_evidence_id
    where iam_events.connector = 'okta_system_log'

),

source_settings as (

    select * from {{ ref('stg_run_config__source_settings') }}

),

file_columns as (

    {{ file_source_columns(['identity', 'deactivated_at', 'event']) }}

),

cloudtrail as (

    -- CloudTrail files hold every service's events: keep IAM's own
    select
        {{ json_text('iam_events.doc', ['requestParameters', 'userName']) }} as identity_text,
        {{ json_text('iam_events.doc', ['eventTime']) }} as deactivated_at_text,
        {{ json_text('iam_events.doc', ['eventName']) }} as event_name,
        iam_events.source_name,
        iam_events.connector,
        {{ carry_evidence('iam_events') }}
    from iam_events
    where
        iam_events.connector = 'aws_cloudtrail'
        and {{ json_text('iam_events.doc', ['eventSource']) }} = 'iam.amazonaws.com'
        and {{ json_text('iam_events.doc', ['eventName']) }} in ('DeleteUser', 'DeleteLoginProfile')
        and {{ json_text('iam_events.doc', ['errorCode']) }} is null

),

okta as (

    select
        {{ json_text('okta_target.value', ['alternateId']) }} as identity_text,
        {{ json_text('iam_events.doc', ['published']) }} as deactivated_at_text,
        {{ json_text('iam_events.doc', ['eventType']) }} as event_name,
        iam_events.source_name,
        iam_events.connector,
        {{ carry_evidence('iam_events') }}
    from okta_events_latest as iam_events
    cross join
        lateral {{ sources_json_array_elements(
            json_get('iam_events.doc', ['target'])
        ) }} as okta_target (value)
    where
        iam_events.capture_rank = 1
        and {{ json_text('iam_events.doc', ['eventType']) }} in (
            'user.lifecycle.deactivate', 'user.lifecycle.suspend'
        )
        and lower({{ json_text('okta_target.value', ['type']) }}) = 'user'
        and coalesce({{ json_text('iam_events.doc', ['outcome', 'result']) }}, 'SUCCESS')
        = 'SUCCESS'

),

file_rows as (

    select
        {{ sources_json_text_at_key(
            'iam_events.doc', "coalesce(file_columns.identity_column, 'identity')"
        ) }} as identity_text,
        {{ sources_json_text_at_key(
            'iam_events.doc', "coalesce(file_columns.deactivated_at_column, 'deactivated_at')"
        ) }} as deactivated_at_text,
        coalesce(
            {{ sources_json_text_at_key(
                'iam_events.doc', "coalesce(file_columns.event_column, 'event')"
            ) }},
            'file'
        ) as event_name,
        iam_events.source_name,
        iam_events.connector,
        {{ carry_evidence('iam_events') }},
        file_columns.time_zone
    from iam_events
    left join file_columns
        on iam_events.source_name = file_columns.source_name
    where iam_events.connector = 'file'

),

events as (

    select
        cloudtrail.*,
        cast(null as {{ t_text() }}) as time_zone
    from cloudtrail
    union all
    select
        okta.*,
        cast(null as {{ t_text() }}) as time_zone
    from okta
    union all
    select * from file_rows

),

final as (

    select
        {{ normalize_identity('events.identity_text') }} as identity,
        {{ to_utc_timestamp('events.deactivated_at_text', 'events.time_zone') }} as deactivated_at,
        events.event_name,
        events.source_name,
        events.connector,
        events.run_id,
        events.evidence_id,
        events.evidence_locator
    from events
    where {{ normalize_identity('events.identity_text') }} is not null

)

select * from final
