-- Who held which role on which cluster when, as this run's catalog and audit
-- log tell it: the periods of int_role_holding_periods_replayed, kept per run
-- so `soxtrail access-as-of` answers from a table:
--     where run_id = <run> and is_held
--       and (valid_from is null or valid_from <= <moment>)
--       and (valid_to is null or <moment> < valid_to)

with

holding_periods as (

    select * from {{ ref('int_role_holding_periods_replayed') }}

),

final as (

    select
        {{ run_id() }} as run_id,
        holding_periods.period_key,
        holding_periods.cluster,
        holding_periods.login_role,
        holding_periods.role,
        holding_periods.period_sequence,
        holding_periods.valid_from,
        holding_periods.valid_to,
        holding_periods.is_held,
        holding_periods.decided_by,
        holding_periods.held_since_at,
        holding_periods.is_in_catalog,
        holding_periods.event_kind,
        holding_periods.event_detail,
        holding_periods.is_every_role,
        holding_periods.event_at,
        holding_periods.event_by,
        holding_periods.statement_text,
        holding_periods.event_evidence_id,
        holding_periods.event_evidence_locator,
        holding_periods.catalog_evidence_id,
        holding_periods.catalog_evidence_locator
    from holding_periods

)

select * from final
