{#- A key is unique within each run (marts hold every run's rows). -#}
{% test unique_per_run(model, column_name) %}

select
    run_id,
    {{ column_name }},
    count(*) as occurrences
from {{ model }}
group by run_id, {{ column_name }}
having count(*) > 1

{% endtest %}
