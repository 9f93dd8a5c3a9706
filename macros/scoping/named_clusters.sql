{#- True when the run names no clusters, else when the cluster is one of them
    (`--clusters`). Accepts a list or a comma-separated string. -#}
{% macro named_clusters(cluster_expr) -%}
    {%- set clusters = var('clusters', []) -%}
    {%- if clusters is string -%}
        {%- set clusters = clusters.split(',') | map('trim') | reject('equalto', '') | list -%}
    {%- endif -%}
    {%- if clusters is none or clusters | length == 0 -%}
        true
    {%- else -%}
        {{ cluster_expr }} in (
            {%- for cluster in clusters -%}
                {{ text_literal(cluster) }}{{ ", " if not loop.last }}
            {%- endfor -%}
        )
    {%- endif -%}
{%- endmacro %}
