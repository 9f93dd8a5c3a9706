{#- Normalised ticket fields, and where each connector finds them when the
    source's `field` settings do not say (Jira paths are relative to the issue,
    ServiceNow and file paths to the record). -#}
{%- set fields = ['ticket_key', 'ticket_type', 'status', 'requester', 'approver',
                  'approved_at', 'subject_user', 'cluster', 'role',
                  'window_start', 'window_end'] -%}
{%- set default_paths = {
    'jira': {'ticket_key': 'key', 'ticket_type': 'fields.issuetype.name',
             'status': 'fields.status.name', 'requester': 'fields.reporter.name'},
    'servicenow': {'ticket_key': 'number', 'status': 'state',
                   'requester': 'requested_by', 'window_start': 'start_date',
                   'window_end': 'end_date'},
} -%}
-- One row per ticket of the run, normalised through the source's settings
-- to: key, type (access | change | other), status, approval, people,
-- cluster, role and change window. Every time becomes timestamptz in UTC.

with

tickets as (

    -- `doc #> '{}'` is the doc itself, decompressed once here: every field
    -- extracted below would otherwise decompress it again
    select
        tickets.run_id,
        tickets.evidence_id,
        tickets.source_name,
        tickets.connector,
        tickets.locator,
        tickets.doc #> '{}' as doc
    from {{ source('tickets', 'tickets') }} as tickets
    where {{ this_run('tickets') }}

),

source_settings as (

    select * from {{ ref('stg_run_config__source_settings') }}

),

field_paths as (

    select
        source_settings.source_name,
        {%- for field in fields %}
            max(
                case
                    when source_settings.setting_key = '{{ field }}'
                        then source_settings.setting_value
                end
            ) as {{ field }}_path,
        {%- endfor %}
        max(case when source_settings.setting = 'timezone' then source_settings.setting_value end)
            as time_zone
    from source_settings
    where source_settings.setting in ('field', 'timezone')
    group by source_settings.source_name

),

ticket_types as (

    select
        source_settings.source_name,
        lower(source_settings.setting_key) as source_ticket_type,
        lower(source_settings.setting_value) as ticket_type
    from source_settings
    where source_settings.setting = 'type'

),

configured_statuses as (

    select distinct
        source_settings.source_name,
        lower(source_settings.setting_key) as status
    from source_settings
    where
        source_settings.setting = 'approved_status'
        and {{ to_boolean("coalesce(source_settings.setting_value, 'true')") }}

),

approved_statuses as (

    -- a source's own approved statuses, else the project's default list
    select * from configured_statuses

    union all

    select distinct
        tickets.source_name,
        lower(default_statuses.status) as status
    from tickets
    cross join
        unnest(array[
            {%- for status in var('approved_statuses') -%}
                '{{ status | replace("'", "''") }}'{{ ", " if not loop.last }}
            {%- endfor -%}
        ]::text[]) as default_statuses (status)
    where not exists (
        select 1
        from configured_statuses
        where configured_statuses.source_name = tickets.source_name
    )

),

extracted as (

    select
        tickets.source_name,
        tickets.connector,
        tickets.doc,
        field_paths.time_zone,
        field_paths.approved_at_path,
        {%- for field in fields %}
            tickets.doc #>> string_to_array(
                coalesce(
                    field_paths.{{ field }}_path,
                    case tickets.connector
                        {%- for connector, paths in default_paths.items() if field in paths %}
                            when '{{ connector }}' then '{{ paths[field] }}'
                        {%- endfor %}
                        when 'file' then '{{ field }}'
                    end
                ),
                '.'
            ) as {{ field }}_text,
        {%- endfor %}
        {{ carry_evidence('tickets') }}
    from tickets
    left join field_paths
        on tickets.source_name = field_paths.source_name

),

changelog_transitions as (

    -- Jira often records the approval only as a status transition: the
    -- approval time is the first transition into an approved status.
    select
        extracted.evidence_id,
        extracted.evidence_locator,
        history.value ->> 'created' as transitioned_at_text
    from extracted
    cross join
        lateral jsonb_array_elements(
            case
                when jsonb_typeof(extracted.doc #> '{changelog,histories}') = 'array'
                    then extracted.doc #> '{changelog,histories}'
                else '[]'::jsonb
            end
        ) as history (value)
    cross join
        lateral jsonb_array_elements(
            case
                when jsonb_typeof(history.value -> 'items') = 'array'
                    then history.value -> 'items'
                else '[]'::jsonb
            end
        ) as history_item (value)
    inner join approved_statuses
        on
            extracted.source_name = approved_statuses.source_name
            and lower(history_item.value ->> 'toString') = approved_statuses.status
    where
        extracted.approved_at_path = 'changelog'
        and history_item.value ->> 'field' = 'status'

),

changelog_approvals as (

    select
        changelog_transitions.evidence_id,
        changelog_transitions.evidence_locator,
        min({{ to_utc_timestamp('changelog_transitions.transitioned_at_text') }}) as approved_at
    from changelog_transitions
    group by
        changelog_transitions.evidence_id,
        changelog_transitions.evidence_locator

),

normalised as (

    select
        btrim(extracted.ticket_key_text) as ticket_key,
        coalesce(
            ticket_types.ticket_type,
            case
                when lower(btrim(extracted.ticket_type_text)) in ('access', 'change')
                    then lower(btrim(extracted.ticket_type_text))
            end,
            'other'
        ) as ticket_type,
        extracted.ticket_type_text as source_ticket_type,
        btrim(extracted.status_text) as status,
        approved_statuses.status is not null as is_approved_status,
        {{ normalize_identity('extracted.requester_text') }} as requester,
        {{ normalize_identity('extracted.approver_text') }} as approver,
        case
            when extracted.approved_at_path = 'changelog' then changelog_approvals.approved_at
            else {{ to_utc_timestamp('extracted.approved_at_text', 'extracted.time_zone') }}
        end as approved_at,
        {{ normalize_identity('extracted.subject_user_text') }} as subject_user,
        nullif(btrim(extracted.cluster_text), '') as cluster,
        nullif(btrim(extracted.role_text), '') as role,
        {{ to_utc_timestamp('extracted.window_start_text', 'extracted.time_zone') }}
            as window_start,
        {{ to_utc_timestamp('extracted.window_end_text', 'extracted.time_zone') }} as window_end,
        extracted.source_name,
        extracted.connector,
        extracted.run_id,
        extracted.evidence_id,
        extracted.evidence_locator
    from extracted
    left join ticket_types
        on
            extracted.source_name = ticket_types.source_name
            and lower(btrim(extracted.ticket_type_text)) = ticket_types.source_ticket_type
    left join approved_statuses
        on
            extracted.source_name = approved_statuses.source_name
            and lower(btrim(extracted.status_text)) = approved_statuses.status
    left join changelog_approvals
        on
            extracted.evidence_id = changelog_approvals.evidence_id
            and extracted.evidence_locator = changelog_approvals.evidence_locator

),

final as materialized (

    -- one row per ticket: overlapping pages or sources can return a ticket
    -- twice; an approved copy wins. Materialized: computed once per query
    -- even where a control looks tickets up row by row (a lateral join).
    select distinct on (normalised.ticket_key)
        normalised.ticket_key,
        normalised.ticket_type,
        normalised.source_ticket_type,
        normalised.status,
        -- approved = an approved status and a recorded approval time
        (normalised.is_approved_status and normalised.approved_at is not null) as is_approved,
        normalised.requester,
        normalised.approver,
        normalised.approved_at,
        normalised.subject_user,
        normalised.cluster,
        normalised.role,
        normalised.window_start,
        normalised.window_end,
        normalised.source_name,
        normalised.connector,
        normalised.run_id,
        normalised.evidence_id,
        normalised.evidence_locator
    from normalised
    where normalised.ticket_key is not null
    order by
        normalised.ticket_key asc,
        (normalised.is_approved_status and normalised.approved_at is not null) desc,
        normalised.approved_at,
        normalised.evidence_id asc,
        normalised.evidence_locator asc

)

select * from final
