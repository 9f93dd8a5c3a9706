-- The sources the run snapshotted, from its evidence rows: what each one is,
-- the cluster it describes (audit logs and catalogs name one) and how much was
-- captured. A source whose connector made no completeness statement still
-- appears here. The completeness statement and the list of included earlier rows
-- are not counted as captured objects.

with

snapshot_evidence as (

    select * from {{ source('soxtrail', 'sox_evidence') }} as evidence
    where
        {{ this_run('evidence') }}
        and evidence.source_system <> 'reconcile'

),

final as (

    select
        {{ json_text('snapshot_evidence.query_params', 'source') }} as source_name,
        min(snapshot_evidence.source_system) as source_system,
        min({{ json_text('snapshot_evidence.query_params', 'connector') }}) as connector,
        min({{ json_text('snapshot_evidence.query_params', 'cluster') }}) as cluster,
        count(*) filter (
            where {{ json_text('snapshot_evidence.query_params', 'raw_table') }}
            not in ('raw.source_completeness', 'raw.included_evidence')
        ) as captured_objects,
        coalesce(sum(snapshot_evidence.result_row_count::integer) filter (
            where {{ json_text('snapshot_evidence.query_params', 'raw_table') }}
            not in ('raw.source_completeness', 'raw.included_evidence')
        ), 0) as captured_rows
    from snapshot_evidence
    where {{ json_has_key('snapshot_evidence.query_params', 'source') }}
    group by {{ json_text('snapshot_evidence.query_params', 'source') }}

)

select * from final
