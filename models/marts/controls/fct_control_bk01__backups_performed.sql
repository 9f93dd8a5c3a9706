-- BK-01 Backups performed.
-- Question: for every in-scope cluster and every day of the quarter, is
-- there a successful backup as the cluster's policy requires (daily: that
-- day; weekly: within the 7 days ending that day)? Days are local days of the
-- reporting time zone (config `timezone`): the auditor's calendar, not UTC's.

with

scoped_clusters as (

    select * from {{ ref('int_clusters_scoped') }}

),

backup_days as (

    select * from {{ ref('int_backup_days_aggregated') }}

),

population_sizes as (

    {{ searched_population_sizes() }}

),

quarter_days as (

    {{ quarter_days('backup_day') }}

),

population as (

    select
        scoped_clusters.cluster
        || '|' || {{ mart_date_text('quarter_days.backup_day') }} as item_key,
        scoped_clusters.cluster,
        quarter_days.backup_day,
        scoped_clusters.backup_policy,
        -- the policy's look-back: a weekly backup covers the 7 days ending that day
        case when scoped_clusters.backup_policy = 'weekly' then 7 else 1 end as window_days,
        scoped_clusters.evidence_id,
        scoped_clusters.evidence_locator
    from scoped_clusters
    cross join quarter_days

),

successful_backup as (

    -- failed and aborted backups do not count
    select
        population.item_key,
        coalesce(sum(backup_days.successful_backups), 0) as successful_backups,
        max(backup_days.last_completed_at) as last_completed_at,
        count(backup_days.backup_day) > 0 as has_successful_backup,
        {{ mart_distinct_array_agg(
            'backup_days.evidence_id', where='backup_days.evidence_id is not null'
        ) }} as backup_evidence_ids
    from population
    left join backup_days
        on
            population.cluster = backup_days.cluster
            and backup_days.backup_day > population.backup_day - population.window_days
            and population.backup_day >= backup_days.backup_day
    group by population.item_key

),

reasons as (

    -- every reason code whose test fails, sorted; empty when the item passes
    select
        population.item_key,
        {{ exception_reasons({
            'NO_BACKUP': 'not successful_backup.has_successful_backup',
        }) }} as exception_reasons
    from population
    inner join successful_backup
        on population.item_key = successful_backup.item_key

),

searched as (

    -- NO_BACKUP claims no successful backup: it searched every backup
    -- inventory of the run, not the scope row
    select
        reasons.item_key,
        {{ searched_population(
            'reasons.exception_reasons', ['NO_BACKUP'], "'backups'"
        ) }} as searched_population
    from reasons

),

final as (

    select
        {{ run_id() }} as run_id,
        'BK-01' as control_id,
        population.item_key,
        population.cluster,
        population.backup_day,
        population.backup_policy,
        successful_backup.successful_backups,
        successful_backup.last_completed_at,
        successful_backup.has_successful_backup,
        {{ control_result('reasons.exception_reasons') }} as result,
        reasons.exception_reasons,
        cast(null as {{ t_text() }}) as candidates,
        null::integer as candidate_count,
        searched.searched_population,
        population_sizes.searched_count,
        population.evidence_id,
        population.evidence_locator,
        {{ sorted_uuids(arrays=['successful_backup.backup_evidence_ids']) }}
            as supporting_evidence_ids,
        {{ control_evidence_id() }} as control_evidence_id
    from population
    inner join successful_backup
        on population.item_key = successful_backup.item_key
    inner join reasons
        on population.item_key = reasons.item_key
    inner join searched
        on population.item_key = searched.item_key
    left join population_sizes
        on searched.searched_population = population_sizes.population_key

)

select * from final
