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
