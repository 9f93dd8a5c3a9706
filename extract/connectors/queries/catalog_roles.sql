-- catalog_roles: every role and its privilege attributes; superusers and
-- CREATEROLE holders are privileged without any membership (AC-03).
-- Built-in pg_* roles are left out.
select
    role.rolname,
    role.rolsuper,
    role.rolcreaterole,
    role.rolcanlogin,
    role.rolvaliduntil
from pg_catalog.pg_roles as role
where role.rolname not like 'pg\_%'
order by role.rolname
