{#- The five controls: (control id, mart, name, description). The one list the
    summary mart and the cross-control tests read. -#}
{% macro control_models() -%}
    {{ return([
        ('AC-01', 'fct_control_ac01__privileged_access_approved', 'Privileged access approved',
         'Every privileged grant on an in-scope cluster in the quarter is backed by an access ticket approved before the grant, within its validity window, by someone other than the grantee, the requester and the person who ran the grant.'),
        ('AC-02', 'fct_control_ac02__timely_revocation', 'Timely revocation',
         'Every role held on an in-scope cluster by a person deactivated in IAM during the quarter is revoked within the SLA and absent from the quarter-end catalog.'),
        ('AC-03', 'fct_control_ac03__quarter_end_access', 'Quarter-end access listing',
         'Every role held by a login role on an in-scope cluster at quarter end is in the role catalog, held by an active identity and, when privileged, approved on record.'),
        ('CM-01', 'fct_control_cm01__changes_authorized', 'Changes authorized',
         'Every DDL statement on an in-scope cluster in the quarter is covered by an approved change ticket for that cluster.'),
        ('BK-01', 'fct_control_bk01__backups_performed', 'Backups performed',
         'Every in-scope cluster has a successful backup for every day of the quarter, per its backup policy.'),
    ]) }}
{%- endmacro %}
