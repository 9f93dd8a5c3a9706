-- The run's non-secret source settings, as recorded from its config.

with

source_settings as (

    select * from {{ source('run_config', 'source_settings') }} as source_settings
    where {{ this_run('source_settings') }}

),

final as (

    select
        source_settings.source_name,
        source_settings.connector,
        source_settings.setting,
        source_settings.key as setting_key,
        source_settings.value as setting_value,
        source_settings.run_id
    from source_settings

)

select * from final
