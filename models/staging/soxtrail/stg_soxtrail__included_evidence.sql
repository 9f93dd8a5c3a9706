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
        cast({{ json_text('included.doc', 'evidence_id') }} as {{ t_uuid() }})
            as included_evidence_id,
        cast({{ json_text('included.doc', 'run_id') }} as {{ t_uuid() }}) as included_run_id,
        {{ json_text('included.doc', 'purpose') }} as purpose,
        {{ json_text('included.doc', 'source_name') }} as included_source_name,
        {{ to_utc_timestamp(json_text('included.doc', 'executed_at')) }} as included_executed_at,
        included.source_name,
        {{ carry_evidence('included') }}
    from included

)

select * from final
