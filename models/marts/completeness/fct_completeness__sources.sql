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

statement_periods as (

    -- each period a statement says its capture covers (`covered`: [{from, to}])
    select
        all_statements.source_name,
        all_statements.taken_at,
        all_statements.evidence_id,
        all_statements.is_included,
        {{ json_text('period.value', ['from']) }} as period_from,
        {{ json_text('period.value', ['to']) }} as period_to
    from all_statements
    {{ mart_json_elements('all_statements.covered', 'period') }}

),

window_sources as (

    -- sources that forget: their statement says how many days they keep
    select statements.source_name
    from statements
    where {{ json_text('statements.facts', ['window_days']) }} is not null

),

window_periods as (

    -- what each capture of such a source covers, the run's and the included ones
    select
        statement_periods.source_name,
        {{ to_utc_timestamp('statement_periods.period_from') }} as covered_from,
        {{ to_utc_timestamp('statement_periods.period_to') }} as covered_to,
        coalesce(statement_periods.taken_at, '?') as taken_at
    from statement_periods
    where
        statement_periods.source_name in (
            select window_sources.source_name from window_sources
        )

),

window_reach as (

    select
        window_periods.*,
        max(window_periods.covered_to) over (
            partition by window_periods.source_name
            order by
                window_periods.covered_from nulls last, window_periods.covered_to nulls last
            rows between unbounded preceding and 1 preceding
        ) as reached_before
    from window_periods

),

window_ends as (

    select
        window_sources.source_name,
        max(window_periods.covered_to) as last_covered_to,
        {{ mart_distinct_string_agg('window_periods.taken_at', "', '") }}
            as captures_taken_at
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
        {{ json_text('finding.value', ['code']) }} as finding_code,
        {{ json_text('finding.value', ['detail']) }} as finding_detail,
        coalesce(
            cast({{ json_text('finding.value', ['exception']) }} as boolean), true
        ) as is_exception
    from statements
    {{ mart_json_elements('statements.findings', 'finding') }}
    -- a source that forgets: its coverage is judged over all its captures below
    where
        not (
            {{ json_text('finding.value', ['code']) }} = 'COVERAGE_GAP'
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
        {{ mart_distinct_array_agg('findings.finding_code', where='findings.is_exception') }}
            as exception_codes,
        {{ mart_distinct_array_agg(
            'findings.finding_code', where='not findings.is_exception'
        ) }} as note_codes,
        {{ mart_string_agg(
            "findings.finding_code || ': ' || findings.finding_detail", "'; '",
            ['findings.finding_code', 'findings.finding_detail']
        ) }} as finding_details
    from findings
    group by findings.source_name

),

coverage as (

    select
        statement_periods.source_name,
        {{ mart_string_agg(
            "statement_periods.period_from || ' to ' || statement_periods.period_to
            || case
                when statement_periods.taken_at is not null
                    then ' (capture of ' || statement_periods.taken_at || ')'
                else ''
            end",
            "'; '",
            [
                'statement_periods.period_from',
                'statement_periods.period_to',
                'statement_periods.taken_at',
            ]
        ) }} as covered_periods,
        -- the included captures' statements
        {{ mart_distinct_array_agg(
            'statement_periods.evidence_id', where='statement_periods.is_included'
        ) }} as supporting_evidence_ids
    from statement_periods
    group by statement_periods.source_name

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
        coalesce(
            source_findings.exception_codes, {{ mart_empty_array(t_text_array()) }}
        ) as exception_codes,
        -- a connector that states nothing leaves the population unproven, which the
        -- sheet says; it is not an exception of the source
        case
            when statements.source_name is null then {{ mart_array(["'NO_STATEMENT'"]) }}
            else coalesce(source_findings.note_codes, {{ mart_empty_array(t_text_array()) }})
        end as note_codes,
        case
            when statements.source_name is null
                then
                    'NO_STATEMENT: the ' || run_sources.connector
                    || ' connector makes no completeness statement'
            else source_findings.finding_details
        end as finding_details,
        {{ mart_array(['run_sources.source_system']) }} as affected_systems,
        statements.evidence_id,
        statements.evidence_locator,
        coalesce(
            coverage.supporting_evidence_ids, {{ mart_empty_array(t_uuid_array()) }}
        ) as supporting_evidence_ids
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

cluster_systems as (

    select
        clusters_seen.cluster,
        {{ mart_distinct_array_agg('clusters_seen.source_system') }} as systems_seen
    from clusters_seen
    group by clusters_seen.cluster

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
        coalesce(
            cluster_systems.systems_seen, {{ mart_empty_array(t_text_array()) }}
        ) as systems_seen
    from cluster_subjects
    left join cluster_systems
        on cluster_subjects.cluster = cluster_systems.cluster

),

cluster_checks as (

    select
        cluster_facts.cluster,
        cluster_facts.is_in_scope,
        cluster_facts.systems_seen,
        not cluster_facts.is_listed as is_unscoped,
        -- what an in-scope cluster must have: its audit log, its catalog, its backups
        -- (listed in byte order)
        {%- set required = [] %}
        {%- for system in ['db_audit', 'db_catalog', 'backups'] | sort %}
            {%- do required.append(
                "case when cluster_facts.is_in_scope and not "
                ~ mart_array_contains('cluster_facts.systems_seen', "'" ~ system ~ "'")
                ~ " then '" ~ system ~ "' end") %}
        {%- endfor %}
        {{ mart_array_compact(mart_array(required)) }} as missing_systems
    from cluster_facts

),

cluster_rows as (

    select
        'cluster|' || cluster_checks.cluster as item_key,
        'cluster' as subject,
        cast(null as {{ t_text() }}) as source_name,
        cast(null as {{ t_text() }}) as source_system,
        cast(null as {{ t_text() }}) as connector,
        cluster_checks.cluster,
        'scope' as basis,
        null::bigint as claimed,
        null::bigint as captured,
        false as is_approximate,
        null::bigint as captured_objects,
        cast(null as {{ t_text() }}) as covered_periods,
        {{ mart_array_compact(mart_array([
            "case
                when cardinality(cluster_checks.missing_systems) > 0
                    then 'MISSING_SOURCE'
            end",
            "case when cluster_checks.is_unscoped then 'UNSCOPED_CLUSTER' end",
        ])) }} as exception_codes,
        {{ mart_empty_array(t_text_array()) }} as note_codes,
        nullif(concat_ws(
            '; ',
            case
                when cardinality(cluster_checks.missing_systems) > 0
                    then
                        'MISSING_SOURCE: in scope, no '
                        || {{ mart_array_join('cluster_checks.missing_systems', "', '") }}
                        || ' source'
            end,
            case
                when cluster_checks.is_unscoped
                    then
                        'UNSCOPED_CLUSTER: seen in '
                        || {{ mart_array_join('cluster_checks.systems_seen', "', '") }}
                        || ', listed by no application in applications.csv'
            end
        ), '') as finding_details,
        -- an unscoped cluster leaves every population in doubt; a missing source, its own
        case
            when cluster_checks.is_unscoped
                then {{ mart_array([
                    "'db_audit'", "'db_catalog'", "'backups'", "'iam'", "'tickets'"
                ]) }}
            else cluster_checks.missing_systems
        end as affected_systems,
        cast(null as {{ t_uuid() }}) as evidence_id,
        cast(null as {{ t_text() }}) as evidence_locator,
        {{ mart_empty_array(t_uuid_array()) }} as supporting_evidence_ids
    from cluster_checks

),

unioned as (

    select * from source_rows
    union all
    select * from cluster_rows

),

qualifications as (

    -- an exception qualifies every control reading a system it affects
    select
        unioned.item_key,
        {{ mart_distinct_array_agg('control_systems.control_id') }} as qualified_controls
    from unioned
    inner join control_systems
        on
            cardinality(unioned.exception_codes) > 0
            and {{ mart_array_contains(
                'unioned.affected_systems', 'control_systems.source_system'
            ) }}
    group by unioned.item_key

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
        coalesce(
            qualifications.qualified_controls, {{ mart_empty_array(t_text_array()) }}
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
    left join qualifications
        on unioned.item_key = qualifications.item_key

)

select * from final
