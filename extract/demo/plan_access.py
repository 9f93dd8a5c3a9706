"""The planted access cases: grants (AC-01), revocations (AC-02), standing access (AC-03)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from extract.demo.model import (
    Hr,
    IamEvent,
    alter_attr,
    create,
    drop,
    grant,
    nologin,
    revoke,
    role_misc,
)

if TYPE_CHECKING:
    from extract.demo.plan import Plan


def plant_access(plan: Plan) -> None:
    """The AC-01 grants (look-alikes that pass, each exception) and AC-03's standing approvals."""
    at, before = plan.at, plan.before
    s = plan.session
    # ---- AC-01 look-alikes that PASS
    plan.access("ACC-101", "alice", "pg-fin-01", "fin_admin", approver="mkeller",
                approved=at(1, 5, "14:02:00.000"), created=at(1, 4, "16:20:00.000"))
    s("AC01-pass-explicit-comment", "pg-fin-01", "grace", [
        grant(at(1, 8, "09:15:02.311"), "/* ACC-101 */ GRANT fin_admin TO alice;",
              ["fin_admin"], ["alice"])])
    plan.access("ACC-102", "bruno", "pg-hr-01", "hr_admin", approver="priya",
                approved=at(1, 10, "17:45:00.000"))
    s("AC01-pass-implicit", "pg-hr-01", "sven", [
        grant(at(1, 11, "10:03:44.120"), "GRANT hr_admin TO bruno;", ["hr_admin"],
              ["bruno"])])
    plan.access("ACC-103", "carla", "pg-pay-01", "pay_admin", approver="tara",
                approved=at(1, 12, "11:00:00.000"))
    s("AC01-pass-explicit-appname", "pg-pay-01", "dmitri", [
        grant(at(1, 15, "14:22:10.005"), "GRANT pay_admin TO carla;", ["pay_admin"],
              ["carla"])], app="dbops-ACC-103")
    plan.access("ACC-104", "kemal", "pg-fin-02", "FIN_ADMIN", approver="mkeller",
                approved=at(1, 16, "09:30:00.000"))
    s("AC01-pass-implicit-identity-map", "pg-fin-02", "grace", [
        grant(at(1, 17, "08:40:00.450"), "GRANT fin_admin TO kemal_adm;", ["fin_admin"],
              ["kemal_adm"])])
    plan.access("ACC-105", "elena", "pg-ord-01", "ord_admin", approver="oscar",
                approved=at(1, 17, "10:00:00.000"))
    plan.access("ACC-106", "farid", "pg-ord-01", "ord_admin", approver="oscar",
                approved=at(1, 17, "10:05:00.000"))
    s("AC01-pass-multi-grant", "pg-ord-01", "sven", [
        grant(at(1, 18, "11:12:13.141"), "GRANT ord_admin, ord_rw TO elena, farid;",
              ["ord_admin", "ord_rw"], ["elena", "farid"])])
    plan.access("ACC-107", "umar", "pg-pay-02", "pay_admin", approver="tara",
                approved=at(1, 19, "15:00:00.000"))
    s("AC01-pass-lowercase-admin-option", "pg-pay-02", "dmitri", [
        grant(at(1, 22, "16:05:30.000"), "grant pay_admin to umar with admin option;",
              ["pay_admin"], ["umar"], admin=True)])
    plan.access("ACC-108", "vera", "pg-fin-03", "SUPERUSER", approver="mkeller",
                approved=at(1, 23, "18:00:00.000"),
                window=(at(1, 24, "12:00:00.000"), at(1, 24, "18:00:00.000")))
    s("AC01-pass-alter-superuser", "pg-fin-03", "dmitri", [
        alter_attr(at(1, 24, "13:00:00.250"), "/* ACC-108 */ ALTER ROLE vera WITH SUPERUSER;",
                   "vera", "SUPERUSER", True)])
    s("AC01-lookalike-nosuperuser", "pg-fin-03", "dmitri", [
        alter_attr(at(1, 24, "17:30:00.000"), "ALTER ROLE vera NOSUPERUSER;", "vera",
                   "SUPERUSER", False)])
    plan.access("ACC-109", "wei", "pg-hr-02", "hr_admin", approver="priya",
                approved=before(90, "09:00:00.000"))
    plan.access("ACC-110", "wei", "pg-hr-02", "hr_admin", approver="priya",
                approved=at(1, 18, "15:00:00.000"))
    s("AC01-pass-most-recent-approval", "pg-hr-02", "sven", [
        grant(at(1, 20, "10:10:10.010"), "GRANT hr_admin TO wei;", ["hr_admin"], ["wei"])])
    # ---- AC-01 exceptions
    s("AC01-no-ticket", "pg-fin-01", "grace", [
        grant(at(1, 9, "15:40:00.700"), "GRANT fin_admin TO hiro;", ["fin_admin"],
              ["hiro"])])
    s("AC01-no-ticket-unknown-key", "pg-pay-01", "dmitri", [
        grant(at(1, 29, "09:05:00.000"), "/* ACC-999 */ GRANT pay_admin TO ines;",
              ["pay_admin"], ["ines"])])
    s("AC01-no-ticket-create-role", "pg-hr-01", "sven", [
        create(at(2, 2, "11:11:11.111"), "CREATE ROLE tmp_admin WITH LOGIN CREATEROLE;",
               "tmp_admin", login=True, attrs=("CREATEROLE",))])
    plan.access("ACC-111", "jonas", "pg-fin-01", "fin_admin", approver="mkeller",
                approved=at(2, 2, "10:00:00.000"))
    s("AC01-cluster-mismatch-comment", "pg-fin-02", "grace", [
        grant(at(2, 5, "10:20:00.000"), "/* ACC-111 */ GRANT fin_admin TO jonas;",
              ["fin_admin"], ["jonas"])])
    plan.access("ACC-112", "lena", "pg-pay-01", "pay_admin", approver="tara",
                approved=at(2, 5, "12:00:00.000"))
    s("AC01-cluster-mismatch-appname", "pg-pay-02", "sven", [
        grant(at(2, 6, "15:00:00.000"), "GRANT pay_admin TO lena;", ["pay_admin"],
              ["lena"])], app="jira-ACC-112")
    plan.access("ACC-113", "marco", "pg-hr-01", "hr_admin", approver=None, approved=None,
                status="Pending Approval", created=at(2, 7, "09:00:00.000"))
    s("AC01-not-approved-pending", "pg-hr-01", "sven", [
        grant(at(2, 8, "09:30:00.000"), "-- ACC-113\nGRANT hr_admin TO marco;",
              ["hr_admin"], ["marco"])])
    plan.access("ACC-114", "nadia", "pg-ord-01", "ord_admin", approver="oscar",
                approved=None, status="Rejected", created=at(2, 8, "10:00:00.000"),
                extra=[(at(2, 8, "16:00:00.000"), "Rejected")])
    s("AC01-not-approved-rejected", "pg-ord-01", "sven", [
        grant(at(2, 9, "14:45:00.000"), "GRANT ord_admin TO nadia;", ["ord_admin"],
              ["nadia"])])
    plan.access("ACC-115", "quentin", "pg-fin-03", "fin_admin", approver="mkeller",
                approved=at(2, 10, "11:00:00.000"), status="Cancelled",
                extra=[(at(2, 11, "09:00:00.000"), "Cancelled")])
    s("AC01-not-approved-cancelled", "pg-fin-03", "dmitri", [
        grant(at(2, 12, "16:00:00.000"), "/* ACC-115 */ GRANT fin_admin TO quentin;",
              ["fin_admin"], ["quentin"])])
    plan.access("ACC-116", "rosa", "pg-fin-01", "fin_admin", approver="mkeller",
                approved=at(1, 22, "15:30:00.000"), created=at(1, 21, "09:00:00.000"))
    s("AC01-approved-after-grant", "pg-fin-01", "grace", [
        grant(at(1, 22, "10:00:00.000"), "/* ACC-116 */ GRANT fin_admin TO rosa;",
              ["fin_admin"], ["rosa"])])
    # approved 08:00 at UTC-5 = 13:00 UTC, after the 09:30 UTC grant
    plan.access("ACC-117", "xenia", "pg-pay-01", "pay_admin", approver="tara",
                approved=at(2, 6, "13:00:00.000"), created=at(2, 5, "14:00:00.000"),
                offset_hours=-5)
    s("AC01-approved-after-grant-zone", "pg-pay-01", "dmitri", [
        grant(at(2, 6, "09:30:00.000"), "GRANT pay_admin TO xenia;", ["pay_admin"],
              ["xenia"])])
    plan.access("ACC-118", "yusuf", "pg-hr-02", "hr_admin", approver="priya",
                approved=before(21, "10:00:00.000"))
    s("AC01-approval-expired-validity", "pg-hr-02", "sven", [
        grant(at(2, 1, "11:00:00.000"), "GRANT hr_admin TO yusuf;", ["hr_admin"],
              ["yusuf"])])
    plan.access("ACC-119", "zoe", "pg-ord-01", "ord_admin", approver="oscar",
                approved=at(1, 1, "12:00:00.000"),
                window=(at(1, 2, "00:00:00.000"), at(1, 5, "23:59:59.000")))
    s("AC01-approval-expired-window", "pg-ord-01", "sven", [
        grant(at(1, 9, "10:00:00.000"), "/* ACC-119 */ GRANT ord_admin TO zoe;",
              ["ord_admin"], ["zoe"])])
    plan.access("ACC-120", "anders", "pg-fin-03", "fin_admin", approver="anders",
                reporter="bea", approved=at(2, 13, "10:00:00.000"))
    s("AC01-self-approval", "pg-fin-03", "dmitri", [
        grant(at(2, 14, "11:30:00.000"), "GRANT fin_admin TO anders;", ["fin_admin"],
              ["anders"])])
    plan.access("ACC-121", "chen", "pg-pay-02", "pay_admin", approver="chen",
                approved=at(2, 14, "16:00:00.000"))
    s("AC01-self-approval-and-requester", "pg-pay-02", "dmitri", [
        grant(at(2, 15, "10:45:00.000"), "GRANT pay_admin TO chen;", ["pay_admin"],
              ["chen"])])
    plan.access("ACC-122", "dara", "pg-hr-01", "hr_admin", approver="oscar",
                reporter="oscar", approved=at(2, 15, "12:00:00.000"))
    s("AC01-approver-is-requester", "pg-hr-01", "sven", [
        grant(at(2, 16, "13:15:00.000"), "/* ACC-122 */ GRANT hr_admin TO dara;",
              ["hr_admin"], ["dara"])])
    plan.access("ACC-123", "bea", "pg-fin-02", "fin_admin", approver="grace",
                approved=at(2, 18, "17:00:00.000"))
    s("AC01-approver-ran-grant", "pg-fin-02", "grace", [
        grant(at(2, 19, "09:00:00.000"), "GRANT fin_admin TO bea;", ["fin_admin"],
              ["bea"])])
    plan.access("ACC-124", "lena", "pg-fin-01", "fin_admin", approver="kemal",
                approved=at(2, 19, "12:00:00.000"))
    s("AC01-approver-ran-grant-identity-map", "pg-fin-01", "kemal_adm", [
        grant(at(2, 20, "14:00:00.000"), "GRANT fin_admin TO lena;", ["fin_admin"],
              ["lena"])])
    # ---- not in the AC-01 population
    s("AC01-out-of-scope-cluster", "pg-web-01", "postgres", [
        grant(at(1, 12, "12:00:00.000"), "GRANT dba TO ivo;", ["dba"], ["ivo"])])
    s("AC01-non-privileged-role", "pg-fin-01", "grace", [
        grant(at(1, 16, "09:00:00.000"), "GRANT fin_ro TO carla;", ["fin_ro"], ["carla"])])
    s("AC01-before-quarter", "pg-fin-01", "grace", [
        grant(plan.quarter.start - timedelta(minutes=2),
              "GRANT fin_admin TO lars;", ["fin_admin"], ["lars"])])
    s("AC01-non-privileged-role-hr", "pg-hr-01", "sven", [
        grant(at(1, 3, "10:00:00.000"), "GRANT hr_ro TO jana;", ["hr_ro"], ["jana"])])
    s("AC01-alter-role-set", "pg-fin-01", "postgres", [
        role_misc(at(1, 5, "08:00:00.000"),
                  "ALTER ROLE svc_etl SET statement_timeout = '15min';"),
        alter_attr(at(1, 5, "08:00:02.000"), "ALTER ROLE svc_monitor NOCREATEROLE;",
                   "svc_monitor", "CREATEROLE", False)])
    # ---- AC-03: standing access approved before the quarter (or not)
    plan.access("ACC-090", "kemal", "pg-fin-01", "fin_admin", approver="mkeller",
                approved=before(60))
    plan.access("ACC-091", "lars", "pg-hr-01", "CREATEROLE", approver="priya",
                approved=before(45))
    plan.access("ACC-092", "pia", "pg-pay-01", "pay_admin", approver="tara",
                approved=before(30))
    plan.access("ACC-093", "kofi", "pg-ord-01", "ord_admin", approver="oscar",
                approved=plan.quarter.end + timedelta(days=1, hours=10),
                created=plan.at(3, 28, "09:00:00.000"))


def plant_revocations(plan: Plan) -> None:
    """AC-02: HR and IAM deactivations and the revocations that follow them (or not)."""
    at, s = plan.at, plan.session
    # nadia: HR (UTC-4) is the earliest deactivation; revoked exactly at the 24 h SLA
    plan.hr.append(Hr("nadia", at(2, 14, "21:30:00.000"), -4, "resignation", "E10231"))
    plan.iam.append(IamEvent(at(2, 15, "09:00:00.000"), "DeleteUser", "nadia"))
    s("AC02-revoked-at-sla", "pg-ord-01", "sven", [
        revoke(at(2, 15, "21:30:00.000"), "REVOKE ord_admin, ord_rw FROM nadia;",
               ["ord_admin", "ord_rw"], ["nadia"]),
        drop(at(2, 15, "21:30:00.000"), "DROP ROLE nadia;", "nadia")])
    # elena: two clusters, revoked on one (pg-ord-01), forgotten on the other (pg-fin-01)
    plan.iam.append(IamEvent(at(1, 25, "16:40:12.000"), "DeleteLoginProfile", "elena"))
    plan.iam.append(IamEvent(at(1, 25, "16:41:03.000"), "DeleteUser", "elena"))
    s("AC02-revoked-on-one-cluster", "pg-ord-01", "sven", [
        revoke(at(1, 26, "10:00:00.000"), "REVOKE ord_admin, ord_rw FROM elena;",
               ["ord_admin", "ord_rw"], ["elena"]),
        nologin(at(1, 26, "10:00:01.500"), "ALTER ROLE elena NOLOGIN;", "elena")])
    # farid: dropped one second after the SLA
    plan.hr.append(Hr("farid", at(3, 2, "09:00:00.000"), 0, "termination", "E10377"))
    s("AC02-revoked-late-by-drop", "pg-ord-01", "sven", [
        drop(at(3, 3, "09:00:01.000"), "DROP ROLE farid;", "farid")])
    # jonas: late on pg-fin-02, in time on pg-fin-01
    plan.iam.append(IamEvent(at(2, 20, "11:00:00.000"), "DeleteUser", "jonas"))
    s("AC02-revoked-in-time", "pg-fin-01", "grace", [
        revoke(at(2, 20, "15:00:00.000"), "REVOKE fin_ro FROM jonas;", ["fin_ro"],
               ["jonas"]),
        drop(at(2, 20, "15:00:02.000"), "DROP USER jonas;", "jonas")])
    s("AC02-revoked-late", "pg-fin-02", "grace", [
        revoke(at(2, 23, "10:00:00.000"), "REVOKE fin_admin FROM jonas;", ["fin_admin"],
               ["jonas"]),
        nologin(at(2, 23, "10:00:03.000"), "ALTER USER jonas NOLOGIN;", "jonas")])
    # hiro: HR spells him in capitals, zone +02:00; never revoked
    plan.hr.append(Hr("HIRO", at(3, 10, "10:00:00.000"), 2, "termination", "E10412"))
    # ines: offboarded before HR termination: nothing held at deactivation
    s("AC02-offboarded-before-termination", "pg-pay-01", "dmitri", [
        revoke(at(2, 20, "10:00:00.000"), "REVOKE pay_admin FROM ines;", ["pay_admin"],
               ["ines"])])
    s("AC02-dropped-before-termination", "pg-pay-01", "dmitri", [
        drop(at(2, 21, "10:00:00.000"), "DROP ROLE ines;", "ines")])
    plan.hr.append(Hr("ines", at(2, 22, "09:00:00.000"), 0, "resignation", "E10198"))
    # ivo: only out-of-scope access
    plan.iam.append(IamEvent(at(1, 30, "13:00:00.000"), "DeleteUser", "ivo"))
    # jana: granted in the quarter, dropped without explicit revoke, in time
    plan.iam.append(IamEvent(at(3, 16, "08:00:00.000"), "DeleteLoginProfile", "jana"))
    s("AC02-dropped-in-time", "pg-hr-01", "sven", [
        drop(at(3, 16, "13:00:00.000"), "DROP USER jana;", "jana")])
    # people who leave holding nothing in the estate
    plan.hr.append(Hr("s.meyer", at(1, 19, "17:00:00.000"), 1, "end of contract",
                      "E09921"))
    plan.iam.append(IamEvent(at(2, 27, "10:30:00.000"), "DeleteUser", "contractor07"))
