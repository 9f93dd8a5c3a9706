-- Each source's completeness statement for the run, as its connector recorded
-- it (extract/connectors/completeness.py): one row per source.

with

statements as (

    select * from {{ source('completeness', 'source_completeness') }} as statements
    where {{ this_run('statements') }}

),

final as (

    select
        statements.source_name,
        statements.connector,
        statements.doc ->> 'basis' as basis,
        (statements.doc ->> 'claimed')::bigint as claimed,
        (statements.doc ->> 'captured')::bigint as captured,
        coalesce((statements.doc ->> 'approximate')::boolean, false) as is_approximate,
        {{ jsonb_array_or_empty("statements.doc -> 'findings'") }} as findings,
        {{ jsonb_array_or_empty("statements.doc -> 'covered'") }} as covered,
        -- what the connector found, per its basis (pgaudit_log: its files and any missing ones)
        statements.doc -> 'facts' as facts,
        {{ carry_evidence('statements') }}
    from statements

)

select * from final
