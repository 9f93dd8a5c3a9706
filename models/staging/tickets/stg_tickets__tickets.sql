{#- The normalised ticket fields. Where a source finds each one is recorded
    in its `field` settings: its config's paths over its connector's defaults
    (`ticket_fields` of the connector's SPEC); this model has no defaults of
    its own. -#}
{%- set fields = ['ticket_key', 'ticket_type', 'status', 'requester', 'approver',
                  'approved_at', 'subject_user', 'cluster', 'role',
                  'window_start', 'window_end'] -%}
{#- The project's approved statuses (`approved_statuses` var) as SQL text. -#}
{%- set approved_statuses = [] -%}
{%- for status in var('approved_statuses') -%}
    {%- do approved_statuses.append("lower(" ~ text_literal(status) ~ ")") -%}
{%- endfor -%}
-- One row per ticket of the run, normalised through the source's settings
-- to: key, type (access | change | other), status, approval, people,
-- cluster, role and change window. Every time becomes timestamptz in UTC.

with

tickets as (

    -- the doc read once per row (sources_json_doc_once: on PostgreSQL, decompressed
    -- once in a subquery the planner keeps apart): each field extracted below
    -- would otherwise decompress the stored doc again. Only `extracted` reads
    -- this CTE, so it is inlined: the docs are never copied to a work file,
    -- and they go no further than `extracted`.
    select
        tickets.run_id,
        tickets.evidence_id,
        tickets.source_name,
        tickets.connector,
        tickets.locator,
        decompressed.doc
    from {{ source('tickets', 'tickets') }} as tickets
    cross join
        lateral {{ sources_json_doc_once('tickets.doc') }} as decompressed  -- noqa: ST05, AM09
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

default_statuses as (

    -- the project's approved statuses (`approved_statuses` var), lower case
    select {{ sources_text_array_of(approved_statuses) }} as statuses

),

configured_statuses as (

    -- a source's own approved statuses (lower case), where it lists any;
    -- the other sources use the project's default list (`approved_statuses`)
    select
        source_settings.source_name,
        array_agg(distinct lower(source_settings.setting_key)) as statuses
    from source_settings
    where
        source_settings.setting = 'approved_status'
        and {{ to_boolean("coalesce(source_settings.setting_value, 'true')") }}
    group by source_settings.source_name

),

extracted as {{ sources_cte_materialized() }} (

    -- materialized: each field (and the changelog scan) is computed once per
    -- ticket, though later CTEs refer to it more than once
    select
        tickets.source_name,
        tickets.connector,
        field_paths.time_zone,
        field_paths.approved_at_path,
        coalesce(
            configured_statuses.statuses,
            default_statuses.statuses
        ) as approved_statuses,
        {%- for field in fields %}
            {{ sources_json_text_at_path('tickets.doc', 'field_paths.' ~ field ~ '_path') }}
                as {{ field }}_text,
        {%- endfor %}
        -- Jira often records the approval only as a status transition: the
        -- approval time is the first change-history entry with an item that
        -- moves the status into an approved status. Computed here, row by
        -- row, while the doc is at hand.
        case
            when field_paths.approved_at_path = 'changelog' then {{ sources_changelog_approved_at(
                'tickets.doc',
                'coalesce(configured_statuses.statuses, default_statuses.statuses)'
            ) }}
        end as changelog_approved_at,
        {{ carry_evidence('tickets') }}
    from tickets
    left join field_paths
        on tickets.source_name = field_paths.source_name
    left join configured_statuses
        on tickets.source_name = configured_statuses.source_name
    cross join default_statuses

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
        coalesce(
            {{ sources_array_has(
                'extracted.approved_statuses', 'lower(btrim(extracted.status_text))'
            ) }},
            false
        ) as is_approved_status,
        {{ normalize_identity('extracted.requester_text') }} as requester,
        {{ normalize_identity('extracted.approver_text') }} as approver,
        case
            when extracted.approved_at_path = 'changelog' then extracted.changelog_approved_at
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

),

ranked as (

    -- one row per ticket: overlapping pages or sources can return a ticket
    -- twice; an approved copy wins
    select
        normalised.*,
        -- approved = an approved status and a recorded approval time
        (normalised.is_approved_status and normalised.approved_at is not null) as is_approved,
        row_number() over (
            partition by normalised.ticket_key
            order by
                (normalised.is_approved_status and normalised.approved_at is not null)
                desc nulls first,
                normalised.approved_at asc nulls last,
                normalised.evidence_id asc nulls last,
                normalised.evidence_locator asc nulls last
        ) as ticket_rank
    from normalised
    where normalised.ticket_key is not null

),

final as {{ sources_cte_materialized() }} (

    -- materialized: computed once per query even where a control looks
    -- tickets up row by row (a lateral join)
    select
        ranked.ticket_key,
        ranked.ticket_type,
        ranked.source_ticket_type,
        ranked.status,
        ranked.is_approved,
        ranked.requester,
        ranked.approver,
        ranked.approved_at,
        ranked.subject_user,
        ranked.cluster,
        ranked.role,
        ranked.window_start,
        ranked.window_end,
        ranked.source_name,
        ranked.connector,
        ranked.run_id,
        ranked.evidence_id,
        ranked.evidence_locator
    from ranked
    where ranked.ticket_rank = 1

)

select * from final
