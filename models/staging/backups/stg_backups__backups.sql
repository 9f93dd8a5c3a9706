-- One row per backup the backup tools report, normalised to
-- cluster, backup id, completion time and success. AWS Backup forgets jobs
-- after about 30 days: the run's own capture and the quarter's mid-quarter
-- captures it includes (stg_soxtrail__included_evidence) are read together,
-- and a job captured more than once counts once, in its latest capture.

with

backups as (

    select * from {{ source('backups', 'backups') }} as backups
    where {{ this_run_or_included('backups') }}

),

included as (

    select * from {{ ref('stg_soxtrail__included_evidence') }}

),

aws_backups_latest as (

    select
        backups.*,
        -- the run's own capture (no inclusion) first, then the newest capture
        {{ latest_capture_rank('backups', 'BackupJobId') }} as capture_rank
    from backups
    left join included
        on backups.evidence_id = included.included_evidence_id
    where backups.connector = 'aws_backup'

),

source_settings as (

    select * from {{ ref('stg_run_config__source_settings') }}

),

file_columns as (

    {{ file_source_columns(['cluster', 'backup_id', 'completed_at', 'status']) }}

),

stanza_clusters as (

    select
        source_settings.source_name,
        source_settings.setting_key as stanza,
        source_settings.setting_value as cluster
    from source_settings
    where source_settings.setting = 'stanza_cluster'

),

resource_clusters as (

    select
        source_settings.source_name,
        source_settings.setting_key as resource_arn,
        source_settings.setting_value as cluster
    from source_settings
    where source_settings.setting = 'resource_cluster'

),

pgbackrest as (

    -- pgBackRest lists completed backups only; `error` flags a backup whose
    -- files failed checksum validation
    select
        coalesce(stanza_clusters.cluster, {{ json_text('backups.doc', ['stanza']) }}) as cluster,
        {{ json_text('backups.doc', ['backup', 'label']) }} as backup_id,
        {{ json_text('backups.doc', ['backup', 'timestamp', 'stop']) }} as completed_at_text,
        not coalesce(
            cast({{ json_text('backups.doc', ['backup', 'error']) }} as boolean), false
        ) as is_success,
        cast(null as {{ t_text() }}) as time_zone,
        backups.source_name,
        backups.connector,
        {{ carry_evidence('backups') }}
    from backups
    left join stanza_clusters
        on
            backups.source_name = stanza_clusters.source_name
            and {{ json_text('backups.doc', ['stanza']) }} = stanza_clusters.stanza
    where backups.connector = 'pgbackrest_info'

),

aws_backup as (

    select
        coalesce(
            resource_clusters.cluster,
            {{ re_replace(json_text('backups.doc', ['ResourceArn']), "'^.*[:/]'", "''") }}
        ) as cluster,
        {{ json_text('backups.doc', ['BackupJobId']) }} as backup_id,
        {{ json_text('backups.doc', ['CompletionDate']) }} as completed_at_text,
        coalesce({{ json_text('backups.doc', ['State']) }} = 'COMPLETED', false) as is_success,
        cast(null as {{ t_text() }}) as time_zone,
        backups.source_name,
        backups.connector,
        {{ carry_evidence('backups') }}
    from aws_backups_latest as backups
    left join resource_clusters
        on
            backups.source_name = resource_clusters.source_name
            and {{ json_text('backups.doc', ['ResourceArn']) }} = resource_clusters.resource_arn
    where backups.capture_rank = 1

),

file_rows as (

    select
        {{ sources_json_text_at_key(
            'backups.doc', "coalesce(file_columns.cluster_column, 'cluster')"
        ) }} as cluster,
        {{ sources_json_text_at_key(
            'backups.doc', "coalesce(file_columns.backup_id_column, 'backup_id')"
        ) }} as backup_id,
        {{ sources_json_text_at_key(
            'backups.doc', "coalesce(file_columns.completed_at_column, 'completed_at')"
        ) }} as completed_at_text,
        lower(btrim({{ sources_json_text_at_key(
            'backups.doc', "coalesce(file_columns.status_column, 'status')"
        ) }}))
        in ('completed', 'success', 'succeeded', 'ok', 'true', 't', 'ok')
            as is_success,
        file_columns.time_zone,
        backups.source_name,
        backups.connector,
        {{ carry_evidence('backups') }}
    from backups
    left join file_columns
        on backups.source_name = file_columns.source_name
    where backups.connector = 'file'

),

unioned as (

    select * from pgbackrest
    union all
    select * from aws_backup
    union all
    select * from file_rows

),

final as (

    select
        btrim(unioned.cluster) as cluster,
        unioned.backup_id,
        {{ to_utc_timestamp('unioned.completed_at_text', 'unioned.time_zone') }} as completed_at,
        unioned.is_success,
        unioned.source_name,
        unioned.connector,
        unioned.run_id,
        unioned.evidence_id,
        unioned.evidence_locator
    from unioned

)

select * from final
