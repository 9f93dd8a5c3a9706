-- The earlier evidence rows the run includes (extract/connectors/inclusion.py):
-- one row per included row, with the run's source that includes it and why.
-- Their raw rows count as the run's own (macro this_run_or_included).

with

included as (

    select * from {{ source('soxtrail_inclusions', 'included_evidence') }} as included
    where {{ this_run('included') }}

),

final as (

    select
        cast(included.doc ->> 'evidence_id' as uuid) as included_evidence_id,
        cast(included.doc ->> 'run_id' as uuid) as included_run_id,
        included.doc ->> 'purpose' as purpose,
        included.doc ->> 'source_name' as included_source_name,
        {{ to_utc_timestamp("included.doc ->> 'executed_at'") }} as included_executed_at,
        included.source_name,
        {{ carry_evidence('included') }}
    from included

)

select * from final
