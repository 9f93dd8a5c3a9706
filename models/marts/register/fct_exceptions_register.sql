-- The exceptions register: every exception item of the run across the
-- controls, with management's response, its waiver state and whether it is
-- new, recurring or resolved against the newest earlier completed quarter run
-- (of the same quarter, else of the previous quarter). A waived exception is
-- still an exception: it is shown, never counted as a pass (SOX: a waiver
-- accepts a risk, it does not make the control effective).

{%- set declared = fromjson(env_var('SOXTRAIL_CONTROLS', '[]')) %}
{%- set controls = [] %}
{%- for control in declared if control['kind'] == 'control' %}
    {%- do controls.append((control['id'], control['model'],
        control['identity'].get('recur_by') or ['item_key'])) %}
{%- endfor %}

with

this_run as (

    select
        runs.id as run_id,
        runs.quarter,
        runs.started_at,
        -- waivers are judged on the day the run started (UTC): a re-run of the
        -- SQL later judges them the same
        cast({{ at_zone_local('runs.started_at', "'UTC'") }} as date) as judged_on,
        case
            when right(runs.quarter, 1) = '1'
                then concat(left(runs.quarter, 4)::integer - 1, 'Q4')
            else concat(left(runs.quarter, 5), right(runs.quarter, 1)::integer - 1)
        end as previous_quarter
    from {{ source('soxtrail', 'sox_runs') }} as runs
    where runs.id = {{ run_id() }}

),

earlier_run as (

    -- finished before this run started: what it compares with never changes
    select
        runs.id as earlier_run_id,
        runs.quarter as earlier_quarter
    from {{ source('soxtrail', 'sox_runs') }} as runs
    inner join this_run
        on runs.quarter in (this_run.quarter, this_run.previous_quarter)
    where
        runs.status = 'completed'
        and coalesce({{ json_text('runs.config', ['_kind']) }}, 'quarter') = 'quarter'
        and runs.finished_at < this_run.started_at
    order by
        runs.quarter = this_run.quarter desc nulls first,
        runs.started_at desc nulls first
    limit 1

),

control_items as (

    {%- for control_id, model_name, recur_by in controls %}
        {%- set recur_parts = [] %}
        {%- for column in recur_by %}
            {%- do recur_parts.append(
                "coalesce(cast(control_rows." ~ column ~ " as " ~ t_text() ~ "), '')") %}
        {%- endfor %}
        select
            control_rows.run_id,
            control_rows.control_id,
            control_rows.item_key,
            control_rows.result,
            control_rows.exception_reasons,
            concat_ws('|', {{ recur_parts | join(', ') }}) as recur_key
        from {{ ref(model_name) }} as control_rows
        where
            {{ this_run('control_rows') }}
            or control_rows.run_id in (
                select earlier_run.earlier_run_id from earlier_run
            )
        {{ "union all" if not loop.last }}
    {%- endfor %}

),

current_items as (

    select control_items.* from control_items
    where control_items.run_id = {{ run_id() }}

),

current_exceptions as (

    select current_items.* from current_items
    where current_items.result = 'EXCEPTION'

),

earlier_exceptions as (

    select
        control_items.*,
        earlier_run.earlier_quarter
    from control_items
    inner join earlier_run
        on control_items.run_id = earlier_run.earlier_run_id
    where control_items.result = 'EXCEPTION'

),

responses as (

    select * from {{ ref('stg_responses__responses') }}

),

earlier_responses as (

    select
        earlier_rows.run_id,
        btrim(earlier_rows.control_id) as control_id,
        btrim(earlier_rows.item_key) as item_key,
        earlier_rows.owner,
        earlier_rows.remediation,
        earlier_rows.due_date::date as due_date,
        earlier_rows.status as response_status
    from {{ source('responses', 'responses') }} as earlier_rows
    inner join earlier_run
        on earlier_rows.run_id = earlier_run.earlier_run_id

),

-- a current exception recurs when the earlier run had one with its key, else
-- one with its recurrence key (the non-time parts the control declares)
recurring_candidates as (

    select
        current_exceptions.control_id,
        current_exceptions.item_key,
        earlier_exceptions.run_id as earlier_run_id,
        earlier_exceptions.earlier_quarter,
        earlier_exceptions.item_key as earlier_item_key,
        row_number() over (
            partition by current_exceptions.control_id, current_exceptions.item_key
            order by
                earlier_exceptions.item_key = current_exceptions.item_key desc nulls first,
                -- the lowest key in byte order, whatever the database's collation
                {{ mart_byte_order('earlier_exceptions.item_key') }} asc nulls last
        ) as match_rank
    from current_exceptions
    inner join earlier_exceptions
        on
            current_exceptions.control_id = earlier_exceptions.control_id
            and current_exceptions.recur_key = earlier_exceptions.recur_key

),

recurring_match as (

    select
        recurring_candidates.control_id,
        recurring_candidates.item_key,
        recurring_candidates.earlier_run_id,
        recurring_candidates.earlier_quarter,
        recurring_candidates.earlier_item_key
    from recurring_candidates
    where recurring_candidates.match_rank = 1

),

resolved as (

    select
        earlier_exceptions.control_id,
        earlier_exceptions.item_key,
        earlier_exceptions.run_id as earlier_run_id,
        earlier_exceptions.earlier_quarter,
        earlier_exceptions.item_key as earlier_item_key,
        earlier_exceptions.recur_key,
        current_items.result
    from earlier_exceptions
    left join current_items
        on
            earlier_exceptions.control_id = current_items.control_id
            and earlier_exceptions.item_key = current_items.item_key
    where not exists (
        select 1 from current_exceptions
        where
            current_exceptions.control_id = earlier_exceptions.control_id
            and current_exceptions.recur_key = earlier_exceptions.recur_key
    )

),

register_items as (

    select
        current_exceptions.control_id,
        current_exceptions.item_key,
        current_exceptions.result,
        current_exceptions.exception_reasons,
        current_exceptions.recur_key,
        case
            when recurring_match.item_key is null then 'new'
            else 'recurring'
        end as recurrence,
        recurring_match.earlier_run_id,
        recurring_match.earlier_quarter,
        recurring_match.earlier_item_key
    from current_exceptions
    left join recurring_match
        on
            current_exceptions.control_id = recurring_match.control_id
            and current_exceptions.item_key = recurring_match.item_key

    union all

    select
        resolved.control_id,
        resolved.item_key,
        resolved.result,
        {{ mart_empty_array(t_text_array()) }} as exception_reasons,
        resolved.recur_key,
        'resolved' as recurrence,
        resolved.earlier_run_id,
        resolved.earlier_quarter,
        resolved.earlier_item_key
    from resolved

),

waivers as (

    select
        register_items.control_id,
        register_items.item_key,
        case
            when
                register_items.recurrence = 'resolved'
                or coalesce(responses.response_status, '') != 'accepted-risk'
                then 'none'
            when responses.expires_on < this_run.judged_on then 'expired'
            else 'waived until ' || {{ mart_date_text('responses.expires_on') }}
        end as waiver_state
    from register_items
    cross join this_run
    left join responses
        on
            register_items.control_id = responses.control_id
            and register_items.item_key = responses.item_key

),

final as (

    select
        {{ run_id() }} as run_id,
        register_items.control_id,
        -- unique per run: the canonical result is ordered by item_key
        register_items.control_id || '|' || register_items.item_key as item_key,
        register_items.item_key as control_item_key,
        register_items.recur_key,
        register_items.result,
        register_items.exception_reasons,
        case
            when register_items.recurrence = 'resolved' then 'RESOLVED'
            when waivers.waiver_state = 'none' then 'EXCEPTION'
            when waivers.waiver_state = 'expired'
                then concat(
                    'EXCEPTION (waiver expired ',
                    {{ mart_date_text('responses.expires_on') }}, ')'
                )
            else concat('EXCEPTION (', waivers.waiver_state, ')')
        end as register_status,
        waivers.waiver_state,
        register_items.recurrence,
        responses.item_key is not null as has_response,
        responses.root_cause,
        responses.remediation,
        responses.owner,
        responses.due_date,
        responses.response_status,
        responses.compensating_control,
        responses.approver,
        responses.expires_on,
        responses.evidence_id as response_evidence_id,
        responses.evidence_locator as response_locator,
        register_items.earlier_run_id,
        register_items.earlier_quarter,
        register_items.earlier_item_key,
        earlier_responses.owner as earlier_owner,
        earlier_responses.remediation as earlier_remediation,
        earlier_responses.due_date as earlier_due_date,
        earlier_responses.response_status as earlier_response_status,
        {{ control_evidence_id() }} as control_evidence_id
    from register_items
    inner join waivers
        on
            register_items.control_id = waivers.control_id
            and register_items.item_key = waivers.item_key
    left join responses
        on
            register_items.control_id = responses.control_id
            and register_items.item_key = responses.item_key
    left join earlier_responses
        on
            register_items.control_id = earlier_responses.control_id
            and register_items.earlier_item_key = earlier_responses.item_key

)

select * from final
