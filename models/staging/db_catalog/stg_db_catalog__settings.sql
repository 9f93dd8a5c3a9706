-- One row per settings capture of a cluster (extract/connectors/queries/
-- catalog_settings.sql): the pgaudit settings in force at the server's own
-- `captured_at`, the known points of LG-01's audit-settings timeline: the run's
-- own captures and the earlier ones it includes (the quarter's mid-quarter
-- captures, the newest capture of an earlier quarter: stg_soxtrail__included_evidence).

with

settings as (

    select * from {{ source('db_catalog', 'catalog_settings') }} as settings
    where {{ this_run_or_included('settings') }}

),

final as (

    select
        settings.cluster,
        {{ to_utc_timestamp('settings.captured_at') }} as captured_at,
        max(case when settings.name = 'pgaudit.log' then settings.setting end) as pgaudit_log,
        max(case when settings.name = 'shared_preload_libraries' then settings.setting end)
            as shared_preload_libraries,
        -- loaded: the library is preloaded and its settings exist on the server
        coalesce(bool_or(
            settings.name = 'shared_preload_libraries'
            and lower(coalesce(settings.setting, '')) like '%pgaudit%'
        ), false)
        and coalesce(bool_or(
            settings.name = 'pgaudit.log' and settings.setting is not null
        ), false) as is_pgaudit_loaded,
        settings.source_name,
        settings.run_id,
        settings.evidence_id,
        min(settings.locator) as evidence_locator
    from settings
    group by
        settings.cluster,
        {{ to_utc_timestamp('settings.captured_at') }},
        settings.source_name,
        settings.run_id,
        settings.evidence_id

)

select * from final
