-- catalog_memberships: every role membership on the cluster, with the
-- member's privilege attributes (AC-02, AC-03 read this listing).
-- Built-in pg_* members are left out; built-in roles granted to a user
-- (e.g. pg_read_all_data) are kept: they are privileged grants.
select
    member_role.rolname as member,
    granted_role.rolname as granted_role,
    membership.admin_option,
    member_role.rolsuper,
    member_role.rolcanlogin,
    member_role.rolcreaterole,
    member_role.rolvaliduntil
from pg_catalog.pg_auth_members as membership
inner join pg_catalog.pg_roles as member_role
    on member_role.oid = membership.member
inner join pg_catalog.pg_roles as granted_role
    on granted_role.oid = membership.roleid
where member_role.rolname not like 'pg\_%'
order by member, granted_role, membership.admin_option
