{#- The predicate restricting a raw table to the run being reconciled. -#}
{% macro this_run(relation_alias) -%}
    {{ relation_alias }}.run_id = {{ run_id() }}
{%- endmacro %}

{#- The run's own rows and the raw rows of the earlier evidence rows it includes
    (stg_soxtrail__included_evidence: mid-quarter captures of a source that forgets,
    earlier settings captures). A model reading them keeps one row per record when a
    record was captured more than once (see stg_iam__deactivations). -#}
{% macro this_run_or_included(relation_alias) -%}
    ({{ relation_alias }}.run_id = {{ run_id() }}
        or {{ relation_alias }}.evidence_id in (
            select included_evidence.included_evidence_id
            from {{ ref('stg_soxtrail__included_evidence') }} as included_evidence
        ))
{%- endmacro %}

{#- The rank of a record among its captures (1 = the one to keep), for a raw table read
    with this_run_or_included and left-joined to stg_soxtrail__included_evidence as
    `included`: records are the same when their source and their `key_field` in `doc`
    agree (a row without the field is its own record); the run's own capture (not
    included) comes first, then the newest capture. -#}
{% macro latest_capture_rank(relation_alias, key_field) -%}
    row_number() over (
        partition by
            {{ relation_alias }}.source_name,
            coalesce(
                {{ json_text(relation_alias ~ '.doc', key_field) }},
                cast({{ relation_alias }}.evidence_id as {{ t_text() }}) || {{ relation_alias }}.locator
            )
        order by
            included.included_executed_at desc nulls first,
            {{ relation_alias }}.evidence_id asc, {{ relation_alias }}.locator asc
    )
{%- endmacro %}
