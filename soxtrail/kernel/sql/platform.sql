-- soxtrail platform schema: run registry, evidence, rejects, raw tables.
-- Idempotent.  Applied by the schema's owner: `soxtrail db init` with an admin
-- DSN, or the first run when runs and owner are one role (the default); a run
-- whose database already has this version applies nothing (kernel/database.py
-- bootstrap, table sox_platform).  Evidence, load and raw tables are
-- append-only: UPDATE / DELETE / TRUNCATE raise in the database; a run role
-- made by `soxtrail db init` has no right to change or disable that
-- (docs/operations.md, "Database roles").

create schema if not exists soxtrail;
create schema if not exists raw;

-- Which version of this file the schema is at (the SHA-256 of its text), who applied it.
create table if not exists soxtrail.sox_platform (
    version text primary key,
    applied_at timestamptz not null default now(),
    applied_by text not null default current_user
);

create table if not exists soxtrail.sox_runs (
    id uuid primary key,
    quarter text not null,
    clusters text[],                       -- null = every in-scope cluster
    config jsonb not null,                 -- the effective config, secrets redacted
    config_hash text not null,
    tool_version text not null,
    git_commit text,
    triggered_by text not null,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    status text not null default 'running'
        check (status in ('running', 'failed', 'completed')),
    phase_reached text
        check (phase_reached in ('snapshot', 'load', 'reconcile', 'render', 'bundle')),
    error text,
    summary jsonb not null default '{}'::jsonb
);

-- Exactly the design's shape.
create table if not exists soxtrail.sox_evidence (
    id uuid primary key,
    run_id uuid not null references soxtrail.sox_runs(id),
    source_system text not null,
    query_name text not null,
    query_text text not null,
    query_params jsonb not null,
    executed_at timestamptz not null,
    executed_by text not null,
    result_row_count integer not null,
    result_hash text not null,
    raw_output_s3_key text not null,
    created_at timestamptz default now()
);
create index if not exists sox_evidence_run_idx on soxtrail.sox_evidence (run_id);

-- Hash chain over evidence rows: each link covers the row and the previous
-- link, so a row changed with the trigger disabled is detected by verify.
create table if not exists soxtrail.sox_evidence_chain (
    seq bigserial primary key,
    evidence_id uuid not null unique references soxtrail.sox_evidence(id),
    prev_hash text not null,
    chain_hash text not null
);

create table if not exists soxtrail.sox_rejects (
    run_id uuid not null,
    evidence_id uuid not null,
    source_name text not null,
    raw_table text not null,
    locator text not null,
    reason text not null,
    raw_text text,
    created_at timestamptz not null default now()
);
create index if not exists sox_rejects_run_idx on soxtrail.sox_rejects (run_id);

-- One row per loaded evidence object: read = loaded + rejected + skipped.
create table if not exists soxtrail.sox_load_stats (
    run_id uuid not null,
    evidence_id uuid not null,
    raw_table text not null,
    records_read bigint not null,
    records_loaded bigint not null,
    records_rejected bigint not null,
    records_skipped bigint not null,       -- filtered by design (non-audit log lines)
    loaded_at timestamptz not null default now(),
    primary key (run_id, evidence_id),
    check (records_read = records_loaded + records_rejected + records_skipped)
);
-- The object's content hash (SHA-256 of its raw rows as COPY text, extract/loader.py
-- ContentHash) and the loader version that wrote them: verify re-derives the raw rows
-- from the stored object and compares.  Null: loaded before they were recorded.
-- (checked first: ALTER TABLE takes an exclusive lock even when the columns exist, and a
-- bootstrap must not wait on, or deadlock with, a run in progress)
do $$
begin
    if not exists (
        select 1 from information_schema.columns
        where table_schema = 'soxtrail' and table_name = 'sox_load_stats'
            and column_name = 'content_sha256'
    ) then
        alter table soxtrail.sox_load_stats add column content_sha256 text;
    end if;
    if not exists (
        select 1 from information_schema.columns
        where table_schema = 'soxtrail' and table_name = 'sox_load_stats'
            and column_name = 'loader_version'
    ) then
        alter table soxtrail.sox_load_stats add column loader_version integer;
    end if;
end $$;

------------------------------------------------------------------------
-- Raw tables: the source's own form, one per connector family.  Every row
-- carries run_id, evidence_id, source_name and a locator (file:line or
-- page#index).  Typing and parsing happen in dbt staging.  Each table's
-- columns, in order, are declared once by its connectors (`raw_tables` of
-- their SPEC; raw.source_settings: extract/loader.py); this DDL and the dbt
-- sources are checked against them by tests/integration/test_raw_tables.py.
------------------------------------------------------------------------

create table if not exists raw.pgaudit_csvlog (
    run_id uuid not null, evidence_id uuid not null, source_name text not null,
    cluster text not null, locator text not null,
    log_time text, user_name text, database_name text, process_id text,
    connection_from text, session_id text, session_line_num text,
    command_tag text, session_start_time text, virtual_transaction_id text,
    transaction_id text, error_severity text, sql_state_code text,
    message text, detail text, hint text, internal_query text,
    internal_query_pos text, context text, query text, query_pos text,
    location text, application_name text, backend_type text,
    leader_pid text, query_id text
);

create table if not exists raw.pgaudit_jsonlog (
    run_id uuid not null, evidence_id uuid not null, source_name text not null,
    cluster text not null, locator text not null,
    doc jsonb not null
);

-- stderr: the configured log_line_prefix is turned into named fields by the
-- loader (the prefix is configuration); the entry text is kept whole.
create table if not exists raw.pgaudit_stderr (
    run_id uuid not null, evidence_id uuid not null, source_name text not null,
    cluster text not null, locator text not null,
    log_time text, user_name text, database_name text, process_id text,
    session_id text, session_line_num text, application_name text,
    remote_host text, error_severity text, message text, raw_entry text not null
);

-- The ROLE and DDL entries of each run, the only ones the controls read (2-3%
-- of a busy audit log): partial indexes whose predicate is, character for
-- character, the class test in models/staging/db_audit/stg_db_audit__audit_entries.sql.
-- The planner uses them only while the two match (checked by
-- tests/integration/test_dbt_controls.py); they change no result.
create index if not exists pgaudit_csvlog_role_ddl_idx on raw.pgaudit_csvlog (run_id)
    where message ~* '^\s*AUDIT: [^,]*,[^,]*,[^,]*,(ROLE|DDL),';
create index if not exists pgaudit_jsonlog_role_ddl_idx on raw.pgaudit_jsonlog (run_id)
    where (doc ->> 'message') ~* '^\s*AUDIT: [^,]*,[^,]*,[^,]*,(ROLE|DDL),';
create index if not exists pgaudit_stderr_role_ddl_idx on raw.pgaudit_stderr (run_id)
    where message ~* '^\s*AUDIT: [^,]*,[^,]*,[^,]*,(ROLE|DDL),';

create table if not exists raw.catalog_memberships (
    run_id uuid not null, evidence_id uuid not null, source_name text not null,
    cluster text not null, locator text not null,
    member text, granted_role text, admin_option text, rolsuper text,
    rolcanlogin text, rolcreaterole text, rolvaliduntil text
);

create table if not exists raw.catalog_roles (
    run_id uuid not null, evidence_id uuid not null, source_name text not null,
    cluster text not null, locator text not null,
    rolname text, rolsuper text, rolcreaterole text, rolcanlogin text,
    rolvaliduntil text
);

-- The logging and pgaudit settings of a cluster as pg_settings gave them, with
-- the server's now() (extract/connectors/queries/catalog_settings.sql).
create table if not exists raw.catalog_settings (
    run_id uuid not null, evidence_id uuid not null, source_name text not null,
    cluster text not null, locator text not null,
    captured_at text, name text, setting text, unit text, source text,
    pending_restart text
);

-- JSON documents as received: CloudTrail records, Okta events, file rows
-- (keyed by the file's own column names).
create table if not exists raw.iam_events (
    run_id uuid not null, evidence_id uuid not null, source_name text not null,
    connector text not null, locator text not null,
    doc jsonb not null
);

-- CloudTrail digest files (extract/connectors/cloudtrail_digest.py): one row per digest,
-- with its signature metadata and the SHA-256 of its uncompressed content.
create table if not exists raw.cloudtrail_digests (
    run_id uuid not null, evidence_id uuid not null, source_name text not null,
    connector text not null, locator text not null,
    doc jsonb not null
);

create table if not exists raw.tickets (
    run_id uuid not null, evidence_id uuid not null, source_name text not null,
    connector text not null, locator text not null,
    doc jsonb not null
);

-- Each source's completeness statement (extract/connectors/completeness.py): one JSON
-- document per source and run, read by the Completeness mart.
create table if not exists raw.source_completeness (
    run_id uuid not null, evidence_id uuid not null, source_name text not null,
    connector text not null, locator text not null,
    doc jsonb not null
);

-- What a run includes of earlier runs' evidence for one of its sources
-- (extract/connectors/inclusion.py): one JSON line per included evidence row, with its
-- chain link; the staging models read those rows' raw rows as the run's own.
create table if not exists raw.included_evidence (
    run_id uuid not null, evidence_id uuid not null, source_name text not null,
    connector text not null, locator text not null,
    doc jsonb not null
);

create table if not exists raw.backups (
    run_id uuid not null, evidence_id uuid not null, source_name text not null,
    connector text not null, locator text not null,
    doc jsonb not null
);

-- Version-controlled catalogs (seeds or the config's `catalogs:` files),
-- loaded per run so every run keeps the catalog it was judged against.
create table if not exists raw.role_catalog (
    run_id uuid not null, evidence_id uuid not null, locator text not null,
    role_name text, cluster_pattern text, is_privileged text,
    description text, owner text, allowed_holders text
);

create table if not exists raw.applications (
    run_id uuid not null, evidence_id uuid not null, locator text not null,
    application text, cluster text, sox_in_scope text, backup_policy text
);

create table if not exists raw.identity_map (
    run_id uuid not null, evidence_id uuid not null, locator text not null,
    login_role text, identity text, identity_type text, approval_ref text
);

-- Management's responses to exceptions (`responses:` in soxtrail.yml, one
-- version-controlled file per quarter), loaded per run like a catalog.
create table if not exists raw.responses (
    run_id uuid not null, evidence_id uuid not null, locator text not null,
    control_id text, item_key text, root_cause text, remediation text,
    owner text, due_date text, status text, compensating_control text,
    approver text, expires_on text
);

-- The user access review behind AC-03 (`access_review:` in soxtrail.yml, the
-- returned review files of a quarter, CSV or XLSX): one row per review row, the
-- file's columns as text (extract/connectors/access_review.py).
create table if not exists raw.access_reviews (
    run_id uuid not null, evidence_id uuid not null, locator text not null,
    item_key text, cluster text, login_role text, holder_identity text,
    identity_status text, granted_role text, role_owner text,
    last_granted_at text, grant_evidence text, decision text, reviewer text,
    reviewed_at text, comment text
);

-- Non-secret per-source settings from the run's recorded config that the
-- staging SQL needs: ticket field paths, ticket types, approved statuses,
-- source time zones, stanza -> cluster and ARN -> cluster maps.
create table if not exists raw.source_settings (
    run_id uuid not null, source_name text not null, connector text not null,
    setting text not null, key text not null, value text,
    primary key (run_id, source_name, setting, key)
);

------------------------------------------------------------------------
-- Management sign-off (`soxtrail signoff`, kernel/attestations.py): one row per
-- attestation of a completed quarter run, append-only and hash-chained like the
-- evidence.  `document` is the exact JSON the signer signed (Ed25519, `signature`
-- hex; null when unauthenticated, without signers.yml), also written beside the
-- bundle at `store_key`.  The columns repeat the document's fields for queries;
-- verify compares them.  seq, prev_hash and chain_hash are set by the owner's
-- trigger below (the run role inserts, never chains).
------------------------------------------------------------------------

create table if not exists soxtrail.sox_attestations (
    seq bigint primary key,
    id uuid not null unique,
    run_id uuid not null references soxtrail.sox_runs(id),
    quarter text not null,
    ordinal integer not null,
    role text not null check (role in ('preparer', 'reviewer')),
    signer text not null,
    signed_at timestamptz not null,
    comment text,
    manifest_sha256 text not null,
    bundle_version integer not null,
    authenticated boolean not null,
    key_fingerprint text,
    supersedes_run uuid,
    document text not null,
    signature text,
    store_key text not null,
    prev_hash text not null,
    chain_hash text not null,
    created_at timestamptz not null default now(),
    unique (run_id, ordinal)
);

-- The link a new record made after a run (a sign-off, a sample) follows in its
-- table's hash chain: refused unless the run is a completed quarter run; the
-- table's writers are serialized (the lock is released at commit).
create or replace function soxtrail.after_run_chain_previous(
    record_table regclass, record_run uuid, record_quarter text, noun text, done text
) returns text
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    previous text;
    run_status text;
    run_quarter text;
    run_kind text;
begin
    perform pg_advisory_xact_lock(hashtext(record_table::text));
    select status, quarter, config ->> '_kind' into run_status, run_quarter, run_kind
        from soxtrail.sox_runs where id = record_run;
    if run_status is distinct from 'completed' or run_quarter is distinct from record_quarter
            or run_kind = 'capture' then
        raise exception 'soxtrail: % of run % refused: only a completed quarter run is % '
                        '(status %, kind %)',
            noun, record_run, done, coalesce(run_status, 'unknown'), coalesce(run_kind, 'quarter')
            using errcode = 'insufficient_privilege';
    end if;
    execute format('select chain_hash from %s order by seq desc limit 1', record_table)
        into previous;
    return coalesce(previous, repeat('0', 64));
end $$;

create or replace function soxtrail.chain_attestation() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    previous text;
    doc jsonb;
begin
    previous := soxtrail.after_run_chain_previous(
        'soxtrail.sox_attestations', new.run_id, new.quarter, 'sign-off', 'signed off');
    doc := new.document::jsonb;
    if doc ->> 'previous' is distinct from previous
            or doc ->> 'id' is distinct from new.id::text
            or doc ->> 'run_id' is distinct from new.run_id::text
            or doc ->> 'quarter' is distinct from new.quarter
            or doc ->> 'role' is distinct from new.role
            or doc ->> 'signer' is distinct from new.signer
            or doc ->> 'manifest_sha256' is distinct from new.manifest_sha256 then
        raise exception 'soxtrail: attestation % refused: its columns or its previous link '
                        'differ from its document', new.id
            using errcode = 'insufficient_privilege';
    end if;
    new.seq := coalesce((select max(seq) from soxtrail.sox_attestations), 0) + 1;
    new.prev_hash := previous;
    new.chain_hash := encode(sha256(convert_to(previous || '|' || new.document, 'UTF8')), 'hex');
    return new;
end $$;

drop trigger if exists chain on soxtrail.sox_attestations;
create trigger chain before insert on soxtrail.sox_attestations
    for each row execute function soxtrail.chain_attestation();

------------------------------------------------------------------------
-- Samples for re-performance (`soxtrail sample`, kernel/samples.py and
-- kernel/sampling.py): one row per sample request of a completed quarter run,
-- made after the run and never part of its record, append-only and
-- hash-chained like the attestations.  `document` is the exact JSON signed
-- (method, seed, population hash and count, sizes, the drawn items; Ed25519
-- `signature` hex, null when no key was found), also written beside the bundle
-- at `store_key`; `drawn_items` repeats its item keys in rank order.  seq,
-- prev_hash and chain_hash are set by the owner's trigger below.
------------------------------------------------------------------------

create table if not exists soxtrail.sox_samples (
    seq bigint primary key,
    id uuid not null unique,
    run_id uuid not null references soxtrail.sox_runs(id),
    quarter text not null,
    ordinal integer not null,
    control_id text not null,
    method text not null,
    seed bigint not null check (seed >= 0),
    size_requested integer not null check (size_requested > 0),
    size_drawn integer not null,
    stratify text,
    population_count integer not null,
    population_hash text not null,
    drawn_items jsonb not null,
    requested_by text not null,
    requested_at timestamptz not null,
    key_fingerprint text,
    document text not null,
    signature text,
    store_key text not null,
    prev_hash text not null,
    chain_hash text not null,
    created_at timestamptz not null default now(),
    unique (run_id, ordinal)
);

create or replace function soxtrail.chain_sample() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    previous text;
    doc jsonb;
begin
    previous := soxtrail.after_run_chain_previous(
        'soxtrail.sox_samples', new.run_id, new.quarter, 'sample', 'sampled');
    doc := new.document::jsonb;
    if doc ->> 'previous' is distinct from previous
            or doc ->> 'id' is distinct from new.id::text
            or doc ->> 'run_id' is distinct from new.run_id::text
            or doc ->> 'control_id' is distinct from new.control_id
            or (doc -> 'seed')::bigint is distinct from new.seed
            or doc ->> 'population_hash' is distinct from new.population_hash
            or jsonb_path_query_array(doc, '$.items[*].item_key')
               is distinct from new.drawn_items then
        raise exception 'soxtrail: sample % refused: its columns or its previous link '
                        'differ from its document', new.id
            using errcode = 'insufficient_privilege';
    end if;
    new.seq := coalesce((select max(seq) from soxtrail.sox_samples), 0) + 1;
    new.prev_hash := previous;
    new.chain_hash := encode(sha256(convert_to(previous || '|' || new.document, 'UTF8')), 'hex');
    return new;
end $$;

drop trigger if exists chain on soxtrail.sox_samples;
create trigger chain before insert on soxtrail.sox_samples
    for each row execute function soxtrail.chain_sample();

------------------------------------------------------------------------
-- Append-only enforcement.
------------------------------------------------------------------------

create or replace function soxtrail.refuse_change() returns trigger
language plpgsql as $$
begin
    raise exception 'soxtrail: % on %.% is refused: evidence and raw tables are append-only',
        tg_op, tg_table_schema, tg_table_name
        using errcode = 'insufficient_privilege';
end $$;

-- Runs only add evidence, load statistics and rejects while they are running: a
-- completed (or failed) run's record is closed.
create or replace function soxtrail.refuse_unless_running(run uuid, what text) returns void
language plpgsql as $$
declare
    current_status text;
begin
    select status into current_status from soxtrail.sox_runs where id = run;
    if current_status is distinct from 'running' then
        raise exception 'soxtrail: % for run % refused: the run is %, not running',
            what, run, coalesce(current_status, 'unknown')
            using errcode = 'insufficient_privilege';
    end if;
end $$;

create or replace function soxtrail.refuse_insert_unless_running() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform soxtrail.refuse_unless_running(new.run_id, 'insert into ' || tg_table_name);
    return new;
end $$;

-- security definer: the run role inserts evidence, the chain is written with the
-- owner's rights (the run role may read the chain, never write it).
create or replace function soxtrail.chain_evidence() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    previous text;
begin
    perform soxtrail.refuse_unless_running(new.run_id, 'evidence');
    -- serialize chain writers; the lock is released at commit
    perform pg_advisory_xact_lock(hashtext('soxtrail.sox_evidence_chain'));
    select chain_hash into previous
        from soxtrail.sox_evidence_chain order by seq desc limit 1;
    previous := coalesce(previous, repeat('0', 64));
    insert into soxtrail.sox_evidence_chain (evidence_id, prev_hash, chain_hash)
    values (new.id, previous,
            encode(sha256(convert_to(previous || '|' || soxtrail.evidence_row_text(
                new.id, new.run_id, new.source_system, new.query_name,
                new.query_text, new.query_params, new.executed_at,
                new.executed_by, new.result_row_count, new.result_hash,
                new.raw_output_s3_key), 'UTF8')), 'hex'));
    return null;
end $$;

-- The canonical text of an evidence row, as hashed into the chain.  verify
-- recomputes it from the row as it stands now.
create or replace function soxtrail.evidence_row_text(
    id uuid, run_id uuid, source_system text, query_name text,
    query_text text, query_params jsonb, executed_at timestamptz,
    executed_by text, result_row_count integer, result_hash text,
    raw_output_s3_key text
) returns text language sql immutable as $$
    select jsonb_build_array(
        id::text, run_id::text, source_system, query_name, query_text,
        query_params,
        to_char(executed_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        executed_by, result_row_count, result_hash, raw_output_s3_key
    )::text
$$;

create or replace function soxtrail.append_only_tables() returns text[]
language sql immutable as $$
    select array[
        'soxtrail.sox_evidence', 'soxtrail.sox_evidence_chain',
        'soxtrail.sox_load_stats', 'soxtrail.sox_rejects', 'soxtrail.sox_platform',
        'soxtrail.sox_attestations', 'soxtrail.sox_samples',
        'raw.pgaudit_csvlog', 'raw.pgaudit_jsonlog', 'raw.pgaudit_stderr',
        'raw.catalog_memberships', 'raw.catalog_roles', 'raw.iam_events',
        'raw.tickets', 'raw.backups', 'raw.role_catalog', 'raw.applications',
        'raw.identity_map', 'raw.source_settings', 'raw.source_completeness',
        'raw.catalog_settings',
        'raw.cloudtrail_digests', 'raw.included_evidence', 'raw.responses',
        'raw.access_reviews'
    ]
$$;

do $$
declare
    t text;
begin
    foreach t in array soxtrail.append_only_tables() loop
        execute format('drop trigger if exists append_only on %s', t);
        -- statement-level: refuses even a statement that would touch no row
        execute format('create trigger append_only before update or delete on %s '
                       'for each statement execute function soxtrail.refuse_change()', t);
        execute format('drop trigger if exists append_only_truncate on %s', t);
        execute format('create trigger append_only_truncate before truncate on %s '
                       'for each statement execute function soxtrail.refuse_change()', t);
    end loop;
end $$;

drop trigger if exists chain on soxtrail.sox_evidence;
create trigger chain after insert on soxtrail.sox_evidence
    for each row execute function soxtrail.chain_evidence();

drop trigger if exists while_running on soxtrail.sox_load_stats;
create trigger while_running before insert on soxtrail.sox_load_stats
    for each row execute function soxtrail.refuse_insert_unless_running();
drop trigger if exists while_running on soxtrail.sox_rejects;
create trigger while_running before insert on soxtrail.sox_rejects
    for each row execute function soxtrail.refuse_insert_unless_running();

------------------------------------------------------------------------
-- Run status only moves forward: running -> completed, running -> failed,
-- failed -> running (resume). A completed run is immutable: completion
-- (status, finished_at, summary) is its last change, and it is never
-- deleted. What identifies a run (quarter, scope, config, tool, who, when it
-- started) never changes.
------------------------------------------------------------------------

create or replace function soxtrail.runs_forward_only() returns trigger
language plpgsql as $$
begin
    if old.status = 'completed' then
        raise exception 'soxtrail: run % is completed and immutable: % refused', old.id, tg_op
            using errcode = 'insufficient_privilege';
    end if;
    if tg_op = 'DELETE' then
        return old;
    end if;
    if not (new.status = old.status
            or (old.status = 'running' and new.status in ('completed', 'failed'))
            or (old.status = 'failed' and new.status = 'running')) then
        raise exception 'soxtrail: run % status % -> % refused: status only moves forward',
            old.id, old.status, new.status
            using errcode = 'insufficient_privilege';
    end if;
    if (new.id, new.quarter, new.clusters, new.config, new.config_hash, new.tool_version,
        new.git_commit, new.triggered_by, new.started_at)
            is distinct from
       (old.id, old.quarter, old.clusters, old.config, old.config_hash, old.tool_version,
        old.git_commit, old.triggered_by, old.started_at) then
        raise exception 'soxtrail: run %: only status, phase, error, finished_at, summary change',
            old.id
            using errcode = 'insufficient_privilege';
    end if;
    return new;
end $$;

-- A run starts running, with nothing recorded yet.
create or replace function soxtrail.runs_start_fresh() returns trigger
language plpgsql as $$
begin
    if new.status <> 'running' or new.phase_reached is not null or new.finished_at is not null
            or new.error is not null or new.summary <> '{}'::jsonb then
        raise exception 'soxtrail: run % must start running with no phase, error or summary',
            new.id
            using errcode = 'insufficient_privilege';
    end if;
    return new;
end $$;

drop trigger if exists forward_only on soxtrail.sox_runs;
create trigger forward_only before update or delete on soxtrail.sox_runs
    for each row execute function soxtrail.runs_forward_only();
drop trigger if exists start_fresh on soxtrail.sox_runs;
create trigger start_fresh before insert on soxtrail.sox_runs
    for each row execute function soxtrail.runs_start_fresh();

-- The only ways a run row changes (kernel/runs.py): the owner's functions, which a
-- run role may execute (it has no UPDATE on sox_runs).  The trigger above still
-- decides which transitions are allowed.
create or replace function soxtrail.run_mark_phase(run uuid, phase text) returns void
language sql security definer set search_path = pg_catalog, pg_temp as $$
    update soxtrail.sox_runs set phase_reached = phase, status = 'running', error = null
    where id = run
$$;

create or replace function soxtrail.run_mark_failed(run uuid, message text) returns void
language sql security definer set search_path = pg_catalog, pg_temp as $$
    update soxtrail.sox_runs set status = 'failed', error = message, finished_at = now()
    where id = run
$$;

create or replace function soxtrail.run_mark_completed(run uuid, run_summary jsonb) returns void
language sql security definer set search_path = pg_catalog, pg_temp as $$
    update soxtrail.sox_runs set status = 'completed', finished_at = now(), summary = run_summary
    where id = run
$$;

create or replace function soxtrail.run_mark_running(run uuid) returns void
language sql security definer set search_path = pg_catalog, pg_temp as $$
    update soxtrail.sox_runs set status = 'running', error = null, finished_at = null
    where id = run
$$;

revoke all on function soxtrail.run_mark_phase(uuid, text) from public;
revoke all on function soxtrail.run_mark_failed(uuid, text) from public;
revoke all on function soxtrail.run_mark_completed(uuid, jsonb) from public;
revoke all on function soxtrail.run_mark_running(uuid) from public;

------------------------------------------------------------------------
-- What a run checks before it records anything (kernel/database.py): every
-- trigger above present and enabled.  A disabled or dropped one means the
-- database's protection was changed; runs refuse to write into it until the
-- owner re-applies this file (`soxtrail db init`).
------------------------------------------------------------------------

create or replace function soxtrail.protection_problems() returns setof text
language sql stable as $$
    with expected (table_name, trigger_name) as (
        select name, 'append_only' from unnest(soxtrail.append_only_tables()) as name
        union all
        select name, 'append_only_truncate' from unnest(soxtrail.append_only_tables()) as name
        union all
        values ('soxtrail.sox_evidence', 'chain'),
               ('soxtrail.sox_runs', 'forward_only'),
               ('soxtrail.sox_runs', 'start_fresh'),
               ('soxtrail.sox_load_stats', 'while_running'),
               ('soxtrail.sox_attestations', 'chain'),
               ('soxtrail.sox_samples', 'chain'),
               ('soxtrail.sox_rejects', 'while_running')
    )
    select format('trigger %s on %s is %s', expected.trigger_name, expected.table_name,
                  case when found.oid is null then 'missing' else 'disabled' end)
    from expected
    left join pg_catalog.pg_trigger as found
        on found.tgrelid = to_regclass(expected.table_name)
        and found.tgname = expected.trigger_name
    where found.oid is null or found.tgenabled = 'D'
    order by expected.table_name, expected.trigger_name
$$;
