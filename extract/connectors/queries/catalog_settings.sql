-- catalog_settings: the server settings that say whether pgaudit logs and where
-- the logs go (LG-01), with the server's own clock as captured_at. One row per
-- wanted name, also when the server has no such setting (pgaudit not loaded:
-- its settings are absent, setting null), so a missing setting is said, not
-- left out.
with wanted (name) as (
    values
        ('shared_preload_libraries'),
        ('pgaudit.log'),
        ('pgaudit.log_relation'),
        ('pgaudit.log_parameter'),
        ('pgaudit.log_level'),
        ('log_destination'),
        ('logging_collector'),
        ('log_line_prefix'),
        ('log_filename'),
        ('log_rotation_age'),
        ('log_timezone'),
        ('log_min_messages')
)

select
    now() as captured_at,
    wanted.name,
    server_setting.setting,
    server_setting.unit,
    server_setting.source,
    server_setting.pending_restart
from wanted
left join pg_catalog.pg_settings as server_setting
    on server_setting.name = wanted.name
order by wanted.name
