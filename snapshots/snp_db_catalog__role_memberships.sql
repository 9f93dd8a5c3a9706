{#- History of role memberships across runs: each run's quarter-end catalog
    is compared with the last known state, so "who held what on date D" is

        select * from snapshots.snp_db_catalog__role_memberships
        where dbt_valid_from <= D and coalesce(dbt_valid_to, 'infinity') > D

    (dbt_valid_from is when the run observed the catalog; catalog_as_of is
    the quarter end it describes). Clusters the run did not read keep their
    last known memberships, so a `--clusters` run never closes other
    clusters' rows.

    Not built on Spark (engine: spark): dbt-spark's snapshots need Delta, Hudi or Iceberg
    tables, whose jars come from Maven; a Spark run's role history is
    marts.fct_access_role_holding_periods, built every run on both engines. -#}
{% snapshot snp_db_catalog__role_memberships %}

{{
    config(
        unique_key='membership_key',
        strategy='check',
        check_cols=['has_admin_option', 'can_member_login', 'is_member_superuser',
                    'can_member_create_role', 'member_valid_until'],
        hard_deletes='invalidate',
        enabled=(target.type != 'spark'),
    )
}}

{%- set existing = adapter.get_relation(this.database, this.schema, this.identifier) %}

with

memberships as (

    select * from {{ ref('stg_db_catalog__memberships') }}

),

catalog_roles as (

    select * from {{ ref('stg_db_catalog__roles') }}

),

observed_clusters as (

    select memberships.cluster from memberships
    union
    select catalog_roles.cluster from catalog_roles

),

observed as (

    select distinct on (membership_key)
        memberships.cluster || '|' || memberships.member_role || '|' || memberships.granted_role
            as membership_key,
        memberships.cluster,
        memberships.member_role,
        memberships.granted_role,
        memberships.has_admin_option,
        memberships.can_member_login,
        memberships.is_member_superuser,
        memberships.can_member_create_role,
        memberships.member_valid_until,
        {{ quarter_end_at() }} as catalog_as_of,
        memberships.run_id as observed_run_id,
        memberships.evidence_id,
        memberships.evidence_locator
    from memberships
    order by membership_key, memberships.evidence_locator

)

{%- if existing is not none %},

carried_forward as (

    select
        snapshot_rows.membership_key,
        snapshot_rows.cluster,
        snapshot_rows.member_role,
        snapshot_rows.granted_role,
        snapshot_rows.has_admin_option,
        snapshot_rows.can_member_login,
        snapshot_rows.is_member_superuser,
        snapshot_rows.can_member_create_role,
        snapshot_rows.member_valid_until,
        snapshot_rows.catalog_as_of,
        snapshot_rows.observed_run_id,
        snapshot_rows.evidence_id,
        snapshot_rows.evidence_locator
    from {{ this }} as snapshot_rows
    where
        snapshot_rows.dbt_valid_to is null
        and snapshot_rows.cluster not in (select observed_clusters.cluster from observed_clusters)

)

select * from observed
union all
select * from carried_forward
{%- else %}

select * from observed
{%- endif %}

{% endsnapshot %}
