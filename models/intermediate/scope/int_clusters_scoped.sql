-- The clusters this run judges: SOX in scope per applications.csv and, when
-- the run names clusters (--clusters), one of them.

with

applications as (

    select * from {{ ref('stg_catalogs__applications') }}

),

clusters as (

    select
        applications.cluster,
        string_agg(distinct applications.application, ', ' order by applications.application)
            as applications,
        bool_or(applications.is_sox_in_scope) as is_sox_in_scope,
        -- a cluster shared by applications is backed up per the strictest policy
        {% set policy = "coalesce(applications.backup_policy, '"
            ~ var("default_backup_policy") | string | replace("'", "''") ~ "')" %}
        case
            when bool_or({{ policy }} = 'daily') then 'daily'
            else min({{ policy }})
        end as backup_policy,
        (array_agg(applications.evidence_id order by applications.evidence_locator))[1]
            as evidence_id,
        (array_agg(applications.evidence_locator order by applications.evidence_locator))[1]
            as evidence_locator
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
