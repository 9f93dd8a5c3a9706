-- Each source's completeness statement for the run, as its connector recorded
-- it (extract/connectors/completeness.py): one row per source, and one per
-- mid-quarter capture of a source that forgets that the run includes
-- (`is_included`, attributed to the run's source that includes it).

with

statements as (

    select * from {{ source('completeness', 'source_completeness') }} as statements
    where {{ this_run_or_included('statements') }}

),

included as (

    select * from {{ ref('stg_soxtrail__included_evidence') }}

),

final as (

    select
        coalesce(included.source_name, statements.source_name) as source_name,
        included.included_evidence_id is not null as is_included,
        statements.connector,
        {{ json_text('statements.doc', 'basis') }} as basis,
        ({{ json_text('statements.doc', 'claimed') }})::bigint as claimed,
        ({{ json_text('statements.doc', 'captured') }})::bigint as captured,
        coalesce(({{ json_text('statements.doc', 'approximate') }})::boolean, false)
            as is_approximate,
        {{ jsonb_array_or_empty(json_subdoc('statements.doc', 'findings')) }} as findings,
        {{ jsonb_array_or_empty(json_subdoc('statements.doc', 'covered')) }} as covered,
        -- what the connector found, per its basis (pgaudit_log: its files and any missing ones)
        {{ json_subdoc('statements.doc', 'facts') }} as facts,
        -- when the capture was taken (the server's clock, for a source that forgets)
        {{ json_text('statements.doc', ['facts', 'taken_at']) }} as taken_at,
        {{ carry_evidence('statements') }}
    from statements
    left join included
        on statements.evidence_id = included.included_evidence_id

)

select * from final
