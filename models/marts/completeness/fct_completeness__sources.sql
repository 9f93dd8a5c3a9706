-- Completeness: is every population whole?
-- One row per source of the run (what the source itself says it holds against
-- what was captured: its connector's statement) and one per cluster seen in
-- any source or named in scope (is it scoped, and does it have its audit-log,
-- catalog and backup sources?). Not a control: an exception here qualifies the
-- result of every control that reads the source's system (docs/controls.md,
-- "Completeness").
-- A source that forgets (Okta, AWS Backup) is covered by its own capture and
-- by the quarter's mid-quarter captures the run includes: its COVERAGE_GAP
-- findings are the stretches of the quarter that no capture covers.

{%- set systems = control_systems() %}

with

run_sources as (

    select * from {{ ref('stg_soxtrail__run_sources') }}

),

all_statements as (

    select * from {{ ref('stg_completeness__statements') }}

),

statements as (

    -- the run's own statement of each source
    select all_statements.* from all_statements
    where not all_statements.is_included

),

window_sources as (

    -- sources that forget: their statement says how many days they keep
    select statements.source_name
    from statements
    where statements.facts ->> 'window_days' is not null

),

window_periods as (

    -- what each capture of such a source covers, the run's and the included ones
    select
        all_statements.source_name,
        {{ to_utc_timestamp("period.value ->> 'from'") }} as covered_from,
        {{ to_utc_timestamp("period.value ->> 'to'") }} as covered_to,
        coalesce(all_statements.taken_at, '?') as taken_at
    from all_statements
    cross join lateral jsonb_array_elements(all_statements.covered) as period (value)
    where all_statements.source_name in (select window_sources.source_name from window_sources)

),

window_reach as (

    select
        window_periods.*,
        max(window_periods.covered_to) over (
            partition by window_periods.source_name
            order by window_periods.covered_from, window_periods.covered_to
            rows between unbounded preceding and 1 preceding
        ) as reached_before
    from window_periods

),

window_ends as (

    select
        window_sources.source_name,
        max(window_periods.covered_to) as last_covered_to,
        string_agg(
            distinct window_periods.taken_at, ', ' order by window_periods.taken_at
        ) as captures_taken_at
    from window_sources
    left join window_periods
        on window_sources.source_name = window_periods.source_name
    group by window_sources.source_name

),

window_gaps as (

    -- the stretches of the quarter no capture covers: before or between the
    -- covered periods, and after the last one
    select
        window_reach.source_name,
        coalesce(window_reach.reached_before, {{ quarter_start_at() }}) as gap_from,
        window_reach.covered_from as gap_to
    from window_reach
    where
        window_reach.covered_from
        > coalesce(window_reach.reached_before, {{ quarter_start_at() }})
    union all
    select
        window_ends.source_name,
        coalesce(window_ends.last_covered_to, {{ quarter_start_at() }}) as gap_from,
        {{ quarter_end_at() }} as gap_to
    from window_ends
    where coalesce(window_ends.last_covered_to, {{ quarter_start_at() }}) < {{ quarter_end_at() }}

),

applications as (

    select * from {{ ref('stg_catalogs__applications') }}

),

scoped_clusters as (

    select * from {{ ref('int_clusters_scoped') }}

),

backups as (

    select * from {{ ref('stg_backups__backups') }}

),

control_systems as (

    {%- for control_id, control_systems in systems %}
        {%- for system in control_systems %}
            select
                '{{ control_id }}' as control_id,
                '{{ system }}' as source_system
            {{ "union all" if not loop.last }}
        {%- endfor %}
        {{ "union all" if not loop.last }}
    {%- endfor %}

),

findings as (

    select
        statements.source_name,
        finding.value ->> 'code' as finding_code,
        finding.value ->> 'detail' as finding_detail,
        coalesce((finding.value ->> 'exception')::boolean, true) as is_exception
    from statements
    cross join lateral jsonb_array_elements(statements.findings) as finding (value)
    -- a source that forgets: its coverage is judged over all its captures below
    where
        not (
            finding.value ->> 'code' = 'COVERAGE_GAP'
            and statements.source_name in (select window_sources.source_name from window_sources)
        )
    union all
    select
        window_gaps.source_name,
        'COVERAGE_GAP' as finding_code,
        {{ utc_text('window_gaps.gap_from') }} || ' to ' || {{ utc_text('window_gaps.gap_to') }}
        || ': covered by no capture (captures taken at ' || window_ends.captures_taken_at
        || '; the source keeps records only so long: add `soxtrail capture` runs during '
        || 'the quarter)' as finding_detail,
        true as is_exception
    from window_gaps
    inner join window_ends
        on window_gaps.source_name = window_ends.source_name

),

source_findings as (

    select
        findings.source_name,
        array_agg(distinct findings.finding_code order by findings.finding_code)
        filter (where findings.is_exception) as exception_codes,
        array_agg(distinct findings.finding_code order by findings.finding_code)
        filter (where not findings.is_exception) as note_codes,
        string_agg(
            findings.finding_code || ': ' || findings.finding_detail, '; '
            order by findings.finding_code, findings.finding_detail
        ) as finding_details
    from findings
    group by findings.source_name

),

coverage as (

    select
        all_statements.source_name,
        string_agg(
            (period.value ->> 'from') || ' to ' || (period.value ->> 'to')
            || case
                when all_statements.taken_at is not null
                    then ' (capture of ' || all_statements.taken_at || ')'
                else ''
            end,
            '; '
            order by period.value ->> 'from', period.value ->> 'to', all_statements.taken_at
        ) as covered_periods,
        -- the included captures' statements
        array_agg(distinct all_statements.evidence_id order by all_statements.evidence_id)
        filter (where all_statements.is_included) as supporting_evidence_ids
    from all_statements
    cross join lateral jsonb_array_elements(all_statements.covered) as period (value)
    group by all_statements.source_name

),

source_rows as (

    select
        'source|' || run_sources.source_name as item_key,
        'source' as subject,
        run_sources.source_name,
        run_sources.source_system,
        run_sources.connector,
        run_sources.cluster,
        coalesce(statements.basis, 'none') as basis,
        statements.claimed,
        coalesce(statements.captured, run_sources.captured_rows) as captured,
        coalesce(statements.is_approximate, false) as is_approximate,
        run_sources.captured_objects,
        coverage.covered_periods,
        coalesce(source_findings.exception_codes, array[]::text[]) as exception_codes,
        -- a connector that states nothing leaves the population unproven, which the
        -- sheet says; it is not an exception of the source
        case
            when statements.source_name is null then array['NO_STATEMENT']
            else coalesce(source_findings.note_codes, array[]::text[])
        end as note_codes,
        case
            when statements.source_name is null
                then
                    'NO_STATEMENT: the ' || run_sources.connector
                    || ' connector makes no completeness statement'
            else source_findings.finding_details
        end as finding_details,
        array[run_sources.source_system] as affected_systems,
        statements.evidence_id,
        statements.evidence_locator,
        coalesce(coverage.supporting_evidence_ids, array[]::uuid[]) as supporting_evidence_ids
    from run_sources
    left join statements
        on run_sources.source_name = statements.source_name
    left join source_findings
        on run_sources.source_name = source_findings.source_name
    left join coverage
        on run_sources.source_name = coverage.source_name

),

clusters_seen as (

    select
        run_sources.cluster,
        run_sources.source_system
    from run_sources
    where run_sources.cluster is not null
    union
    select
        backups.cluster,
        'backups' as source_system
    from backups
    where backups.cluster is not null

),

cluster_subjects as (

    select clusters_seen.cluster from clusters_seen
    union
    select scoped_clusters.cluster from scoped_clusters

),

cluster_facts as (

    select
        cluster_subjects.cluster,
        exists(
            select 1 from applications
            where applications.cluster = cluster_subjects.cluster
        ) as is_listed,
        exists(
            select 1 from scoped_clusters
            where scoped_clusters.cluster = cluster_subjects.cluster
        ) as is_in_scope,
        array(
            select distinct clusters_seen.source_system
            from clusters_seen
            where clusters_seen.cluster = cluster_subjects.cluster
            order by clusters_seen.source_system
        ) as systems_seen
    from cluster_subjects

),

cluster_checks as (

    select
        cluster_facts.cluster,
        cluster_facts.is_in_scope,
        cluster_facts.systems_seen,
        not cluster_facts.is_listed as is_unscoped,
        -- what an in-scope cluster must have: its audit log, its catalog, its backups
        array(
            select required.source_system
            from
                unnest(array['db_audit', 'db_catalog', 'backups'])
                    as required (source_system)
            where
                cluster_facts.is_in_scope
                and not required.source_system = any(cluster_facts.systems_seen)
            order by required.source_system
        ) as missing_systems
    from cluster_facts

),

cluster_rows as (

    select
        'cluster|' || cluster_checks.cluster as item_key,
        'cluster' as subject,
        null::text as source_name,
        null::text as source_system,
        null::text as connector,
        cluster_checks.cluster,
        'scope' as basis,
        null::bigint as claimed,
        null::bigint as captured,
        false as is_approximate,
        null::bigint as captured_objects,
        null::text as covered_periods,
        array_remove(array[
            case
                when cardinality(cluster_checks.missing_systems) > 0
                    then 'MISSING_SOURCE'
            end,
            case when cluster_checks.is_unscoped then 'UNSCOPED_CLUSTER' end
        ], null) as exception_codes,
        array[]::text[] as note_codes,
        nullif(concat_ws(
            '; ',
            case
                when cardinality(cluster_checks.missing_systems) > 0
                    then
                        'MISSING_SOURCE: in scope, no '
                        || array_to_string(cluster_checks.missing_systems, ', ')
                        || ' source'
            end,
            case
                when cluster_checks.is_unscoped
                    then
                        'UNSCOPED_CLUSTER: seen in '
                        || array_to_string(cluster_checks.systems_seen, ', ')
                        || ', listed by no application in applications.csv'
            end
        ), '') as finding_details,
        -- an unscoped cluster leaves every population in doubt; a missing source, its own
        case
            when cluster_checks.is_unscoped
                then array['db_audit', 'db_catalog', 'backups', 'iam', 'tickets']
            else cluster_checks.missing_systems
        end as affected_systems,
        null::uuid as evidence_id,
        null::text as evidence_locator,
        array[]::uuid[] as supporting_evidence_ids
    from cluster_checks

),

unioned as (

    select * from source_rows
    union all
    select * from cluster_rows

),

final as (

    select
        {{ run_id() }} as run_id,
        'COMPLETENESS' as control_id,
        unioned.item_key,
        unioned.subject,
        unioned.source_name,
        unioned.source_system,
        unioned.connector,
        unioned.cluster,
        unioned.basis,
        unioned.claimed,
        unioned.captured,
        unioned.is_approximate,
        unioned.captured_objects,
        unioned.covered_periods,
        unioned.note_codes,
        unioned.finding_details,
        array(
            select distinct control_systems.control_id
            from control_systems
            where
                cardinality(unioned.exception_codes) > 0
                and control_systems.source_system = any(unioned.affected_systems)
            order by control_systems.control_id
        ) as qualified_controls,
        case
            when cardinality(unioned.exception_codes) > 0 then 'EXCEPTION'
            when unioned.basis in ('none', 'no_total') then 'UNVERIFIED'
            else 'COMPLETE'
        end as result,
        unioned.exception_codes as exception_reasons,
        unioned.evidence_id,
        unioned.evidence_locator,
        unioned.supporting_evidence_ids,
        {{ control_evidence_id() }} as control_evidence_id
    from unioned

)

select * from final
