-- The summary sheet: per control, the population, the exceptions and the
-- verdict. A control with no exceptions is EFFECTIVE; one exception makes it
-- EXCEPTIONS (the auditor judges severity from the control's own sheet). A
-- control that reads a source with a completeness exception is qualified by it
-- (`qualified_by`): its population may not be whole. The completeness marts get
-- a line of their own, COMPLETE or INCOMPLETE, never counted as a control.

{%- set controls = control_models() %}
{%- set completeness = control_models('completeness') %}

with

controls as (

    {%- for control_id, model_name, control_name, description in controls %}
        select
            '{{ control_id }}' as control_id,
            '{{ control_name }}' as control_name,
            '{{ description | replace("'", "''") }}' as description,
            {{ control_evidence_id(model_name) }} as control_evidence_id
        {{ "union all" if not loop.last }}
    {%- endfor %}

),

control_results as (

    {%- for control_id, model_name, control_name, description in controls %}
        select
            control_rows.control_id,
            control_rows.result
        from {{ ref(model_name) }} as control_rows
        where {{ this_run('control_rows') }}
        {{ "union all" if not loop.last }}
    {%- endfor %}

),

tallies as (

    select
        controls.control_id,
        count(control_results.result) as population,
        count(*) filter (where control_results.result = 'EXCEPTION') as exceptions
    from controls
    left join control_results
        on controls.control_id = control_results.control_id
    group by controls.control_id

),

completeness_rows as (

    {%- for control_id, model_name, control_name, description in completeness %}
        select
            '{{ control_id }}' as control_id,
            '{{ control_name }}' as control_name,
            '{{ description | replace("'", "''") }}' as description,
            completeness_rows.item_key,
            completeness_rows.result,
            completeness_rows.qualified_controls,
            {{ control_evidence_id(model_name) }} as control_evidence_id
        from {{ ref(model_name) }} as completeness_rows
        where {{ this_run('completeness_rows') }}
        {{ "union all" if not loop.last }}
    {%- endfor %}

),

qualifications as (

    select
        qualified.control_id,
        {{ mart_distinct_array_agg('completeness_rows.item_key') }} as qualified_by
    from completeness_rows
    {{ mart_unnest('completeness_rows.qualified_controls', 'qualified', 'control_id') }}
    where completeness_rows.result = 'EXCEPTION'
    group by qualified.control_id

),

completeness_tallies as (

    select
        completeness_rows.control_id,
        min(completeness_rows.control_name) as control_name,
        min(completeness_rows.description) as description,
        count(*) as population,
        count(*) filter (where completeness_rows.result = 'EXCEPTION') as exceptions,
        cast(
            min(cast(completeness_rows.control_evidence_id as {{ t_text() }})) as {{ t_uuid() }}
        ) as control_evidence_id
    from completeness_rows
    group by completeness_rows.control_id

),

final as (

    select
        {{ run_id() }} as run_id,
        controls.control_id,
        controls.control_id as item_key,
        controls.control_name,
        controls.description,
        tallies.population,
        tallies.exceptions,
        round(
            (tallies.population - tallies.exceptions)::numeric / nullif(tallies.population, 0), 4
        ) as pass_rate,
        case when tallies.exceptions = 0 then 'EFFECTIVE' else 'EXCEPTIONS' end as result,
        coalesce(
            qualifications.qualified_by, {{ mart_empty_array(t_text_array()) }}
        ) as qualified_by,
        controls.control_evidence_id
    from controls
    inner join tallies
        on controls.control_id = tallies.control_id
    left join qualifications
        on controls.control_id = qualifications.control_id
    union all
    select
        {{ run_id() }} as run_id,
        completeness_tallies.control_id,
        completeness_tallies.control_id as item_key,
        completeness_tallies.control_name,
        completeness_tallies.description,
        completeness_tallies.population,
        completeness_tallies.exceptions,
        round(
            (completeness_tallies.population - completeness_tallies.exceptions)::numeric
            / nullif(completeness_tallies.population, 0), 4
        ) as pass_rate,
        case
            when completeness_tallies.exceptions = 0 then 'COMPLETE' else 'INCOMPLETE'
        end as result,
        {{ mart_empty_array(t_text_array()) }} as qualified_by,
        completeness_tallies.control_evidence_id
    from completeness_tallies

)

select * from final
