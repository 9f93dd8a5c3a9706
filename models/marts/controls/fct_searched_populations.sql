-- The populations the controls searched before claiming something absent:
-- one row per (population, evidence object searched), per run. A control
-- row that claims NO_TICKET, NO_CHANGE_TICKET, NO_BACKUP, NOT_REVOKED,
-- NO_APPROVAL_ON_RECORD, UNKNOWN_ROLE, NO_LOG_EVIDENCE or LOG_GAP names its
-- population (`searched_population`) and size (`searched_count`); the objects
-- are listed here, one a row, never packed into one cell.

with

searched_populations as (

    select * from {{ ref('int_searched_populations_listed') }}

),

final as (

    select
        {{ run_id() }} as run_id,
        searched_populations.control_id,
        -- unique per run: the canonical result is ordered by item_key
        searched_populations.population_key
        || '|' || coalesce(
            cast(searched_populations.evidence_id as {{ t_text() }}), 'none'
        ) as item_key,
        searched_populations.population_key,
        searched_populations.description,
        searched_populations.evidence_id,
        searched_populations.source_name,
        searched_populations.query_name,
        searched_populations.searched_count,
        {{ control_evidence_id() }} as control_evidence_id
    from searched_populations

)

select * from final
