-- The clusters this run judges: SOX in scope per applications.csv and, when
-- the run names clusters (--clusters), one of them.

with

applications as (

    select * from {{ ref('stg_catalogs__applications') }}

),

clusters as (

    select
        applications.cluster,
        {{ sources_string_agg_distinct_sorted('applications.application', "', '") }}
            as applications,
        bool_or(applications.is_sox_in_scope) as is_sox_in_scope,
        -- a cluster shared by applications is backed up per the strictest policy
        {% set policy = "coalesce(applications.backup_policy, '"
            ~ var("default_backup_policy") | string | replace("'", "''") ~ "')" %}
        case
            when bool_or({{ policy }} = 'daily') then 'daily'
            else min({{ policy }})
        end as backup_policy,
        -- the first row of the catalog (by its position in the file) names the
        -- evidence
        {{ sources_first_by_order('applications.evidence_id', 'applications.evidence_locator') }}
            as evidence_id,
        min(applications.evidence_locator) as evidence_locator
    from applications
    group by applications.cluster

),

final as (

    select
        clusters.cluster,
        clusters.applications,
        clusters.backup_policy,
        clusters.evidence_id,
        clusters.evidence_locator
    from clusters
    where
        clusters.is_sox_in_scope
        and {{ named_clusters('clusters.cluster') }}

)

select * from final
