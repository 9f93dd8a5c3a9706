-- The populations a control searches before it claims something is absent:
-- one row per (population, evidence object searched). A claim such as
-- NO_TICKET or NO_BACKUP rests on every object of its population, not on
-- the scope row, so the row names the population and its size and this
-- model lists the objects (fct_searched_populations keeps them per run).
-- A population with no object at all keeps one row with no evidence id: the
-- claim then rests on nothing captured, which the reader must see.

with

run_sources as (

    select * from {{ ref('stg_soxtrail__run_sources') }}

),

included_evidence as (

    select * from {{ source('soxtrail_inclusions', 'included_evidence') }} as included
    where {{ this_run('included') }}

),

scoped_clusters as (

    select * from {{ ref('int_clusters_scoped') }}

),

run_evidence as (

    select
        evidence.id as evidence_id,
        evidence.source_system,
        {{ json_text('evidence.query_params', ['source']) }} as source_name,
        {{ json_text('evidence.query_params', ['cluster']) }} as cluster,
        {{ json_text('evidence.query_params', ['raw_table']) }} as raw_table,
        evidence.query_name
    from {{ source('soxtrail', 'sox_evidence') }} as evidence
    where
        {{ this_run('evidence') }}
        and evidence.source_system <> 'reconcile'

),

included_objects as (

    -- the earlier captures of a source that forgets count as searched too
    select
        cast({{ json_text('included_evidence.doc', ['evidence_id']) }} as {{ t_uuid() }})
            as evidence_id,
        run_sources.source_system,
        included_evidence.source_name,
        run_sources.cluster,
        {{ json_text('included_evidence.doc', ['raw_table']) }} as raw_table,
        {{ json_text('included_evidence.doc', ['query_name']) }} as query_name
    from included_evidence
    inner join run_sources
        on included_evidence.source_name = run_sources.source_name
    where {{ json_text('included_evidence.doc', ['purpose']) }} = 'capture'

),

captured_objects as (

    -- the objects that hold records: not completeness statements, not the
    -- lists of included rows
    select * from run_evidence
    where
        coalesce(raw_table, '')
        not in ('raw.source_completeness', 'raw.included_evidence')
    union all
    select * from included_objects

),

populations as (

    -- every population a control may search in this run, whether or not it
    -- holds an object
    select
        'tickets' as population_key,
        'AC-01,AC-03,CM-01' as control_id,
        'tickets' as source_system,
        cast(null as {{ t_text() }}) as cluster,
        'every ticket object captured for the run (ticket pages and exports)'
            as description
    union all
    select
        'backups' as population_key,
        'BK-01' as control_id,
        'backups' as source_system,
        cast(null as {{ t_text() }}) as cluster,
        'every backup inventory captured for the run' as description
    union all
    select
        'role_catalog' as population_key,
        'AC-03' as control_id,
        'role_catalog' as source_system,
        cast(null as {{ t_text() }}) as cluster,
        'the role catalog of the run' as description
    union all
    -- only a run with a user access review (`access_review:`) searches one
    select distinct
        'access_review' as population_key,
        'AC-03' as control_id,
        'access_review' as source_system,
        cast(null as {{ t_text() }}) as cluster,
        'every review file of the run''s user access review' as description
    from run_sources
    where run_sources.connector = 'access_review'
    union all
    select
        'audit_log:' || scoped_clusters.cluster as population_key,
        'AC-02,LG-01' as control_id,
        'db_audit' as source_system,
        scoped_clusters.cluster,
        'every audit log file captured for cluster ' || scoped_clusters.cluster
            as description
    from scoped_clusters

),

searched as (

    select
        populations.population_key,
        populations.control_id,
        populations.description,
        captured_objects.evidence_id,
        captured_objects.source_name,
        captured_objects.query_name
    from populations
    left join captured_objects
        on
            populations.source_system = captured_objects.source_system
            and (
                populations.cluster is null
                or populations.cluster = captured_objects.cluster
            )
            -- the role catalog population is the role catalog alone, not the
            -- other seeds loaded under the same system
            and (
                populations.population_key <> 'role_catalog'
                or captured_objects.raw_table = 'raw.role_catalog'
            )

),

final as (

    select
        searched.population_key,
        searched.control_id,
        searched.description,
        searched.evidence_id,
        searched.source_name,
        searched.query_name,
        cast(count(searched.evidence_id) over (
            partition by searched.population_key
        ) as integer) as searched_count
    from searched

)

select * from final
