"""The demo estate's fixed inventory: its clusters, people and role catalog."""

from __future__ import annotations

PREFIX_PLAIN = "%m [%p] %q%u@%d "
PREFIX_SESSION = "%m [%p] %c %l %q%u@%d %a "

BASE_CLUSTERS = (
    # name, application, in scope, policy, format, prefix, db, schema, tables, family
    ("pg-fin-01", "general-ledger", True, "daily", "csvlog", None, "ledger", "gl",
     ("journal", "account", "period_close"), "fin"),
    ("pg-fin-02", "accounts-payable", True, "daily", "jsonlog", None, "ledger", "ap",
     ("invoice", "vendor", "payment_run"), "fin"),
    ("pg-fin-03", "treasury", True, "daily", "stderr", PREFIX_PLAIN, "treasury", "treasury",
     ("fx_rate", "cash_position", "hedge"), "fin"),
    ("pg-hr-01", "hris", True, "daily", "csvlog", None, "hr", "hr",
     ("employee", "position", "leave_request"), "hr"),
    ("pg-hr-02", "payroll-history", True, "daily", "jsonlog", None, "hr", "hr",
     ("payroll", "payslip", "tax_code"), "hr"),
    ("pg-pay-01", "payments-core", True, "daily", "stderr", PREFIX_SESSION, "payments",
     "payments", ("transfer", "mandate", "beneficiary"), "pay"),
    ("pg-pay-02", "payments-settlement", True, "daily", "csvlog", None, "payments", "payments",
     ("settlement", "batch", "fee"), "pay"),
    ("pg-ord-01", "order-management", True, "weekly", "jsonlog", None, "orders", "orders",
     ("order_line", "customer", "shipment"), "ord"),
    ("pg-web-01", "web-storefront", False, "daily", "stderr", PREFIX_PLAIN, "web", "web",
     ("session", "cart", "page_view"), "web"),
    ("pg-analytics-01", "analytics", False, "weekly", "csvlog", None, "warehouse", "mart",
     ("daily_sales", "funnel", "cohort"), "analytics"),
    ("pg-dev-01", "dev-sandbox", False, "weekly", "jsonlog", None, "devdb", "scratch",
     ("t1", "t2", "fixture"), "dev"),
    ("pg-test-01", "qa", False, "daily", "stderr", PREFIX_SESSION, "testdb", "qa",
     ("run", "case", "result"), "test"),
)
FORMAT_CYCLE = (("csvlog", None), ("jsonlog", None), ("stderr", PREFIX_PLAIN),
                ("csvlog", None), ("jsonlog", None), ("stderr", PREFIX_SESSION))

PEOPLE = {
    "alice": "Alice Martin", "bruno": "Bruno Costa", "carla": "Carla Diaz",
    "dara": "Dara Walsh", "elena": "Elena Petrova", "farid": "Farid Haddad",
    "grace": "Grace Liu", "hiro": "Hiro Tanaka", "ines": "Ines Moreau", "jonas": "Jonas Berg",
    "kemal": "Kemal Aydin", "lena": "Lena Fischer", "marco": "Marco Rossi",
    "nadia": "Nadia Karim", "oscar": "Oscar Lindqvist", "priya": "Priya Nair",
    "quentin": "Quentin Blanc", "rosa": "Rosa Alvarez", "sven": "Sven Olsen",
    "tara": "Tara Singh", "umar": "Umar Farouk", "vera": "Vera Novak", "wei": "Wei Zhang",
    "xenia": "Xenia Popa", "yusuf": "Yusuf Demir", "zoe": "Zoe Clarke",
    "anders": "Anders Holm", "bea": "Bea Santos", "chen": "Chen Wu", "dmitri": "Dmitri Volkov",
    "mkeller": "Mara Keller", "ivo": "Ivo Horvat", "jana": "Jana Dvorak",
    "lars": "Lars Eriksen", "mila": "Mila Jovanovic", "noor": "Noor Aziz", "otto": "Otto Braun",
    "pia": "Pia Schmid", "kofi": "Kofi Mensah",
}
DBAS = ("grace", "sven", "dmitri")
BUILTIN_ROLES = (
    "pg_checkpoint", "pg_database_owner", "pg_execute_server_program", "pg_monitor",
    "pg_read_all_data", "pg_read_all_settings", "pg_read_all_stats", "pg_read_server_files",
    "pg_signal_backend", "pg_stat_scan_tables", "pg_write_all_data", "pg_write_server_files",
)

# role_name, cluster_pattern, is_privileged, description, owner, allowed_holders
ROLE_CATALOG: tuple[tuple[str, str, bool, str, str, str], ...] = (
    ("SUPERUSER", "*", True, "Superuser attribute (pseudo-role)", "platform-dba",
     "postgres; DBAs under break-glass ticket"),
    ("CREATEROLE", "*", True, "CREATEROLE attribute (pseudo-role)", "platform-dba",
     "postgres; DBAs"),
    ("dba", "*", True, "Platform DBA group", "platform-dba", "DBA team"),
    ("migrator", "*", True, "Schema owner used by migrations", "platform-dba", "svc_migrate"),
    ("readonly", "*", False, "Read-only on application schemas", "platform-dba",
     "any employee with a ticket"),
    ("etl_writer", "*", False, "Batch load writer", "data-eng", "svc_etl"),
    ("pg_monitor", "*", False, "Built-in monitoring role", "platform-dba", "monitoring agents"),
    ("fin_admin", "pg-fin-*", True, "Finance schema administration", "finance-it",
     "finance DBAs and leads with an approved ticket"),
    ("fin_rw", "pg-fin-*", False, "Finance read/write", "finance-it", "finance applications"),
    ("fin_ro", "pg-fin-*", False, "Finance read-only", "finance-it", "finance staff"),
    ("hr_admin", "pg-hr-*", True, "HR schema administration", "hr-it",
     "HR IT leads with an approved ticket"),
    ("hr_rw", "pg-hr-*", False, "HR read/write", "hr-it", "HR applications"),
    ("hr_ro", "pg-hr-*", False, "HR read-only", "hr-it", "HR staff"),
    ("pay_admin", "pg-pay-*", True, "Payments schema administration", "payments-it",
     "payments leads with an approved ticket"),
    ("pay_rw", "pg-pay-*", False, "Payments read/write", "payments-it", "payments apps"),
    ("ord_admin", "pg-ord-*", True, "Orders schema administration", "commerce-it",
     "commerce leads with an approved ticket"),
    ("ord_rw", "pg-ord-*", False, "Orders read/write", "commerce-it", "order services"),
    ("web_app", "pg-web-*", False, "Storefront application role", "web-team", "web services"),
    ("analytics_ro", "pg-analytics-*", False, "Warehouse read-only", "data-eng", "analysts"),
    ("app_rw", "pg-svc-*", False, "Shared-service read/write", "platform-dba", "applications"),
)
FAMILY_ROLES = {
    "fin": ("fin_admin", "fin_rw", "fin_ro"), "hr": ("hr_admin", "hr_rw", "hr_ro"),
    "pay": ("pay_admin", "pay_rw"), "ord": ("ord_admin", "ord_rw"), "web": ("web_app",),
    "analytics": ("analytics_ro",), "dev": (), "test": (), "svc": ("app_rw",), "lab": (),
}
APP_RW = {"fin": "fin_rw", "hr": "hr_rw", "pay": "pay_rw", "ord": "ord_rw", "web": "web_app",
          "analytics": "analytics_ro", "svc": "app_rw"}
