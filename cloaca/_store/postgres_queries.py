"""Every SQL statement of the PostgreSQL store, named, in one place.

Parameters are always `$n` placeholders (asyncpg), never formatted into the text. The only
identifiers ever formatted into SQL are schema and role names, validated by
`cloaca.tenancy.check_identifier` and quoted by `quote_ident` first.

Times are double precision POSIX seconds, like the SQLite store. Each table that is listed
newest first has an identity column `seq`, the tie-breaker SQLite's rowid is for SQLite.
"""

from __future__ import annotations

import re

# Migrations: (version, script). A schema records the highest version applied in
# cloaca_schema_version. Each store numbers its own: PostgreSQL's 3 (work shared by task)
# is SQLite's 7, and SQLite's 3 is empty.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE workflow_executions (
            seq              BIGINT GENERATED ALWAYS AS IDENTITY,
            id               TEXT PRIMARY KEY,
            workflow_name    TEXT NOT NULL,
            workflow_version TEXT NOT NULL,
            status           TEXT NOT NULL,
            input_context    TEXT NOT NULL,
            final_context    TEXT,
            error_message    TEXT,
            started_at       DOUBLE PRECISION NOT NULL,
            completed_at     DOUBLE PRECISION,
            owner            TEXT,
            lease_until      DOUBLE PRECISION
        );
        CREATE INDEX ix_executions_started ON workflow_executions (started_at DESC, seq DESC);
        CREATE INDEX ix_executions_workflow
            ON workflow_executions (workflow_name, started_at DESC, seq DESC);
        CREATE INDEX ix_executions_unfinished ON workflow_executions (owner, lease_until)
            WHERE status IN ('Pending', 'Running');

        CREATE TABLE task_executions (
            execution_id   TEXT NOT NULL,
            task_name      TEXT NOT NULL,
            status         TEXT NOT NULL,
            attempt        INTEGER NOT NULL DEFAULT 0,
            not_before     DOUBLE PRECISION,
            started_at     DOUBLE PRECISION,
            completed_at   DOUBLE PRECISION,
            output_context TEXT,
            error_message  TEXT,
            finish_seq     INTEGER,
            PRIMARY KEY (execution_id, task_name)
        );

        CREATE TABLE trigger_schedules (
            seq              BIGINT GENERATED ALWAYS AS IDENTITY,
            id               TEXT PRIMARY KEY,
            trigger_name     TEXT NOT NULL UNIQUE,
            workflow_name    TEXT NOT NULL,
            poll_interval_ms BIGINT NOT NULL,
            allow_concurrent BOOLEAN NOT NULL,
            enabled          BOOLEAN NOT NULL DEFAULT TRUE,
            last_poll_at     DOUBLE PRECISION,
            created_at       DOUBLE PRECISION NOT NULL,
            updated_at       DOUBLE PRECISION NOT NULL
        );

        CREATE TABLE schedule_executions (
            seq                   BIGINT GENERATED ALWAYS AS IDENTITY,
            id                    TEXT PRIMARY KEY,
            schedule_id           TEXT NOT NULL,
            kind                  TEXT NOT NULL,
            context_hash          TEXT,
            scheduled_time        DOUBLE PRECISION,
            claimed_at            DOUBLE PRECISION NOT NULL,
            workflow_execution_id TEXT,
            completed_at          DOUBLE PRECISION,
            created_at            DOUBLE PRECISION NOT NULL,
            updated_at            DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX ix_fires_schedule ON schedule_executions (schedule_id, created_at);
        CREATE INDEX ix_fires_open ON schedule_executions (schedule_id, context_hash)
            WHERE completed_at IS NULL;
        CREATE INDEX ix_fires_run ON schedule_executions (workflow_execution_id)
            WHERE completed_at IS NULL;
        CREATE UNIQUE INDEX ux_fires_cron_slot ON schedule_executions (schedule_id, scheduled_time)
            WHERE kind = 'cron';
        """,
    ),
    (
        2,
        """
        CREATE TABLE cron_schedules (
            seq             BIGINT GENERATED ALWAYS AS IDENTITY,
            id              TEXT PRIMARY KEY,
            workflow_name   TEXT NOT NULL,
            instance_name   TEXT,
            cron_expression TEXT NOT NULL,
            timezone        TEXT NOT NULL,
            enabled         BOOLEAN NOT NULL DEFAULT TRUE,
            catchup_policy  TEXT NOT NULL DEFAULT 'skip',
            params          TEXT,
            next_run_at     DOUBLE PRECISION NOT NULL,
            last_run_at     DOUBLE PRECISION,
            created_at      DOUBLE PRECISION NOT NULL,
            updated_at      DOUBLE PRECISION NOT NULL
        );
        CREATE UNIQUE INDEX ux_cron_instance ON cron_schedules (workflow_name, instance_name)
            WHERE instance_name IS NOT NULL;
        CREATE INDEX ix_cron_due ON cron_schedules (next_run_at) WHERE enabled;
        ALTER TABLE schedule_executions ADD COLUMN outcome TEXT;
        ALTER TABLE schedule_executions ADD COLUMN error TEXT;
        ALTER TABLE schedule_executions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX ix_fires_lost ON schedule_executions (claimed_at)
            WHERE completed_at IS NULL AND kind = 'cron';
        """,
    ),
    (
        # PostgreSQL only (SQLite shares work by run): per-task claims and run versions.
        3,
        """
        ALTER TABLE workflow_executions ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE task_executions ADD COLUMN owner TEXT;
        ALTER TABLE task_executions ADD COLUMN lease_until DOUBLE PRECISION;
        -- The run version that last changed the row (0: unchanged since the run began).
        ALTER TABLE task_executions ADD COLUMN step_version BIGINT NOT NULL DEFAULT 0;
        CREATE INDEX ix_tasks_claimable ON task_executions (status, not_before)
            WHERE status IN ('Ready', 'Running');
        CREATE INDEX ix_tasks_owner ON task_executions (owner) WHERE owner IS NOT NULL;
        """,
    ),
    (
        4,
        """
        ALTER TABLE workflow_executions ADD COLUMN trace_context TEXT;
        ALTER TABLE task_executions ADD COLUMN attempt_base INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE task_executions ADD COLUMN traceback TEXT;
        """,
    ),
    (
        # Reactors (GRAPHS.md C11, C13.5).
        5,
        """
        CREATE TABLE reactor_firings (
            id           TEXT PRIMARY KEY,
            tenant_id    TEXT NOT NULL,
            reactor_name TEXT NOT NULL,
            payload      TEXT NOT NULL,
            fired_at     DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX ix_reactor_firings ON reactor_firings (tenant_id, reactor_name, fired_at, id);
        CREATE INDEX ix_reactor_firings_age ON reactor_firings (fired_at);

        CREATE TABLE reactor_trigger_subscriptions (
            id                        TEXT PRIMARY KEY,
            reactor_name              TEXT NOT NULL,
            workflow_name             TEXT NOT NULL,
            tenant_id                 TEXT NOT NULL,
            enabled                   BOOLEAN NOT NULL DEFAULT TRUE,
            last_seen_fired_at        DOUBLE PRECISION,
            last_seen_firing_id       TEXT,
            created_at                DOUBLE PRECISION NOT NULL,
            updated_at                DOUBLE PRECISION NOT NULL,
            predicate_expression      TEXT,
            predicate_degraded        BOOLEAN NOT NULL DEFAULT FALSE,
            predicate_error_count     INTEGER NOT NULL DEFAULT 0,
            last_predicate_error      TEXT,
            last_predicate_error_at   DOUBLE PRECISION,
            predicate_error_firing_id TEXT,
            lease_owner               TEXT,
            lease_until               DOUBLE PRECISION,
            UNIQUE (reactor_name, workflow_name, tenant_id)
        );

        CREATE TABLE reactor_state (
            tenant_id    TEXT NOT NULL,
            reactor_name TEXT NOT NULL,
            state        TEXT NOT NULL,
            updated_at   DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (tenant_id, reactor_name)
        );

        CREATE TABLE accumulator_checkpoints (
            tenant_id        TEXT NOT NULL,
            accumulator_name TEXT NOT NULL,
            data             TEXT NOT NULL,
            updated_at       DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (tenant_id, accumulator_name)
        );

        CREATE TABLE state_accumulator_buffers (
            tenant_id        TEXT NOT NULL,
            accumulator_name TEXT NOT NULL,
            data             TEXT NOT NULL,
            updated_at       DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (tenant_id, accumulator_name)
        );
        """,
    ),
    (
        # History: every filter of LIST_EXECUTIONS reads its page off an index, newest
        # first (version 1's indexes serve no filter and the workflow filter).
        6,
        """
        CREATE INDEX IF NOT EXISTS ix_executions_status
            ON workflow_executions (status, started_at DESC, seq DESC);
        CREATE INDEX IF NOT EXISTS ix_executions_workflow_status
            ON workflow_executions (workflow_name, status, started_at DESC, seq DESC);
        """,
    ),
]

LATEST_VERSION = max(version for version, _ in MIGRATIONS)

GROUP_WRITE_SETTINGS = {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off"}
"""Session settings of the connections that only write groups (WRITE_STATEMENTS): their
plans are made once per connection, not once per group (planning one costs more than
running it for a few rows), and read every table by key whatever its statistics say. On a
new database the plans are made while the tables are nearly empty, and a cost-based plan
made then scans them whole, and keeps doing so as they grow. (The arrays of a group are
still joined with each other by hashing.)"""


# Schema set-up and migrations (run in one transaction, under MIGRATION_LOCK) ----------
MIGRATION_LOCK_KEY = "cloaca.migrate:"
"""Prefix of the advisory lock key (the schema name follows) serialising set-up of one schema."""
ADVISORY_XACT_LOCK = "SELECT 1 FROM pg_advisory_xact_lock(hashtextextended($1::text, 0))"
SCHEMA_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1::text)"
CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {schema}"  # {schema}: quote_ident() of a checked name
SET_LOCAL_SEARCH_PATH = "SET LOCAL search_path TO {schema}"
CURRENT_SCHEMA = "SELECT current_schema()"
CREATE_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS cloaca_schema_version (version INTEGER NOT NULL)"
GET_VERSION = "SELECT MAX(version) FROM cloaca_schema_version"
SET_VERSION = "INSERT INTO cloaca_schema_version (version) VALUES ($1)"

# runs -------------------------------------------------------------------------------
EXECUTION_COLUMNS = (
    "id, workflow_name, workflow_version, status, input_context, started_at, "
    "final_context, error_message, completed_at, trace_context"
)
TASK_COLUMNS = (
    "execution_id, task_name, status, attempt, not_before, started_at, completed_at, "
    "output_context, error_message, finish_seq, attempt_base, traceback"
)
_T_TASK_COLUMNS = ", ".join("t." + c.strip() for c in TASK_COLUMNS.split(","))
_TASK_ARRAYS = (
    "$1::text[], $2::text[], $3::text[], $4::int[], $5::float8[], $6::float8[], $7::float8[], "
    "$8::text[], $9::text[], $10::int[], $11::int[], $12::text[]"
)

_TASK_ROW_ARRAYS = (
    "{0}::text[], {1}::text[], {2}::text[], {3}::int[], {4}::float8[], {5}::float8[], {6}::float8[], "
    "{7}::text[], {8}::text[], {9}::int[], {10}::int[], {11}::text[], {12}::text[], {13}::float8[]"
)
"""Task rows as fourteen parallel arrays: TASK_COLUMNS, then owner and lease_until (set
for a row written Running, which the writer claims; NULL otherwise)."""

# The writes of runs that concurrent callers make at once, in one statement (one round
# trip, one transaction): new runs ($1..$13: the run, and the link of an existing (cron)
# fire) with their task rows ($14..$27), and scheduling steps ($1..$8 of _STEPS), each a
# compare-and-set on its run's version, with their task rows ($9..$23, numbered by step).
# One statement for each mix (WRITE_STATEMENTS): new runs only, steps only, or both (the
# steps' parameters then follow the new runs'). Returns the numbers (1-based) of the steps
# written, and announces new work and ended runs.
#
# Steps lock their runs' rows in id order first (`locked`), so that two groups never wait
# for each other in a cycle; a step's task rows are written after its run's row is
# locked, as everywhere (see the locks note of the claims below). The compare-and-set
# reads the locked row (the latest version: nobody else can change it until commit). Two
# steps of one run in a group: the run's row is updated once, by one of them; the other
# is refused. Ended runs are announced to other runners unless the runner that ends the
# run is the one that started it (it knows; see PostgresStore.commit_step).
_NEW_RUNS = f"""
    new_runs AS (
        INSERT INTO workflow_executions ({EXECUTION_COLUMNS}, owner, lease_until)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::float8[], $7::text[], $8::text[], $9::float8[], $10::text[],
                             $11::text[], $12::float8[])
    ), new_tasks AS (
        INSERT INTO task_executions ({TASK_COLUMNS}, owner, lease_until)
        SELECT * FROM unnest({_TASK_ROW_ARRAYS.format(*(f"${n}" for n in range(14, 28)))})
    ), links AS (
        UPDATE schedule_executions f SET workflow_execution_id = l.id, updated_at = l.at
          FROM unnest($1::text[], $13::text[], $6::float8[]) AS l (id, fire_id, at)
         WHERE f.id = l.fire_id
    )"""
_NEW_RUN_PARAMETERS = 27
_STEPS = f"""
    step AS (
        SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                             $6::text[], $7::float8[], $8::boolean[])
               WITH ORDINALITY AS s (id, version, owner, status, final_context, error_message,
                                     completed_at, work, n)
    ), locked AS (
        SELECT id, owner, version, status FROM workflow_executions
         WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
    ), run AS (
        UPDATE workflow_executions e
           SET version = e.version + 1,
               status = COALESCE(s.status, 'Running'),
               final_context = CASE WHEN s.status IS NULL THEN e.final_context ELSE s.final_context END,
               error_message = CASE WHEN s.status IS NULL THEN e.error_message ELSE s.error_message END,
               completed_at = COALESCE(s.completed_at, e.completed_at),
               owner = CASE WHEN s.status IS NULL THEN e.owner END,
               lease_until = CASE WHEN s.status IS NULL THEN e.lease_until END
          FROM step s JOIN locked l ON l.id = s.id
         WHERE e.id = l.id AND l.version = s.version AND l.status IN ('Pending', 'Running')
        RETURNING s.n, e.id, e.version, s.status, s.completed_at, s.work,
                  l.owner IS DISTINCT FROM s.owner AS started_elsewhere
    ), tasks AS (
        UPDATE task_executions t
           SET status = u.status, attempt = u.attempt, not_before = u.not_before,
               started_at = u.started_at, completed_at = u.completed_at,
               output_context = u.output_context, error_message = u.error_message,
               finish_seq = u.finish_seq, attempt_base = u.attempt_base, traceback = u.traceback,
               owner = u.owner, lease_until = u.lease_until, step_version = run.version
          FROM unnest($9::bigint[], {_TASK_ROW_ARRAYS.format(*(f"${n}" for n in range(10, 24)))})
               AS u (n, {TASK_COLUMNS}, owner, lease_until)
          JOIN run ON run.n = u.n
         WHERE t.execution_id = u.execution_id AND t.task_name = u.task_name
    ), fires AS (
        UPDATE schedule_executions f SET completed_at = run.completed_at, updated_at = run.completed_at
          FROM run
         WHERE run.status IS NOT NULL AND f.completed_at IS NULL AND f.workflow_execution_id = run.id
    )"""
_STEP_PARAMETERS = 23


def _write_statement(new_runs: bool, steps: bool) -> str:
    """The statement writing new runs (their parameters, then whether any of their task
    rows is claimable at once), steps, or both; its last parameter is the notice channel."""
    parts, work, count = [], [], 0
    if new_runs:
        parts.append(_NEW_RUNS)
        count = _NEW_RUN_PARAMETERS + 1
        work.append(f"${count}::boolean")
    if steps:
        parts.append(re.sub(r"\$(\d+)", lambda m: f"${int(m.group(1)) + count}", _STEPS))
        count += _STEP_PARAMETERS
        work.append("EXISTS (SELECT 1 FROM run WHERE work)")
    channel = f"${count + 1}::text"
    parts.append(f"work AS (SELECT pg_notify({channel}, 'w') WHERE {' OR '.join(work)})")
    written, ended = "NULL::bigint[]", "0::bigint"
    if steps:
        parts.append(f"""ended AS (
        SELECT pg_notify({channel}, 'd' || id) FROM run WHERE status IS NOT NULL AND started_elsewhere
    )""")
        written, ended = "(SELECT array_agg(n) FROM run)", "(SELECT count(*) FROM ended)"
    return f"WITH {', '.join(parts)}\n    SELECT {written}, (SELECT count(*) FROM work), {ended}\n"


WRITE_STATEMENTS = {
    (new_runs, steps): _write_statement(new_runs, steps)
    for new_runs, steps in ((True, False), (False, True), (True, True))
}
"""By (new runs in the group, steps in the group)."""

DEDUP_LOCK_KEY = "cloaca.fire:"
"""Prefix of the advisory lock key (schema, trigger and context hash follow) of a dedup check."""
OPEN_FIRE_EXISTS = """
    SELECT EXISTS (
        SELECT 1 FROM schedule_executions f JOIN trigger_schedules t ON f.schedule_id = t.id
         WHERE t.trigger_name = $1 AND f.context_hash = $2 AND f.completed_at IS NULL)
"""
INSERT_TRIGGER_FIRE = """
    INSERT INTO schedule_executions
        (id, schedule_id, kind, context_hash, claimed_at, workflow_execution_id, completed_at,
         created_at, updated_at)
    SELECT $1, id, 'trigger', $2, $3, $4, $5, $3, $3 FROM trigger_schedules WHERE trigger_name = $6
"""

LOCK_RUN_OWNERS = """
    SELECT id, owner, status FROM workflow_executions WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
"""
UPDATE_TASKS = f"""
    UPDATE task_executions t
       SET status = u.status, attempt = u.attempt, not_before = u.not_before,
           started_at = u.started_at, completed_at = u.completed_at,
           output_context = u.output_context, error_message = u.error_message,
           finish_seq = u.finish_seq, attempt_base = u.attempt_base, traceback = u.traceback
      FROM unnest({_TASK_ARRAYS}) AS u ({TASK_COLUMNS})
     WHERE t.execution_id = u.execution_id AND t.task_name = u.task_name
"""
# Task rows, the end of the run ($11..$15) and the closing of its fires, in one statement.
SAVE_AND_FINISH = f"""
    WITH tasks AS ({UPDATE_TASKS}), run AS (
        UPDATE workflow_executions
           SET status = $13, final_context = $14, error_message = $15, completed_at = $16,
               owner = NULL, lease_until = NULL
         WHERE id = $17
    )
    UPDATE schedule_executions SET completed_at = $16, updated_at = $16
     WHERE workflow_execution_id = $17 AND completed_at IS NULL
"""

# Two runners never claim the same run: the candidate rows are locked FOR UPDATE and rows
# locked by a concurrent claimer are skipped; a row whose claim committed meanwhile is
# re-checked against the WHERE clause (READ COMMITTED) and then has a fresh lease.
CLAIM_ORPHANS = f"""
    WITH orphan AS (
        SELECT id FROM workflow_executions
         WHERE status IN ('Pending', 'Running')
           AND (owner IS NULL OR lease_until IS NULL OR lease_until < $1)
           AND workflow_name = ANY($2::text[])
         FOR UPDATE SKIP LOCKED
    )
    UPDATE workflow_executions e SET owner = $3, lease_until = $4, status = 'Running'
      FROM orphan WHERE e.id = orphan.id
    RETURNING {', '.join('e.' + c.strip() for c in EXECUTION_COLUMNS.split(','))}
"""
SELECT_TASKS_OF = f"""
    SELECT {TASK_COLUMNS} FROM task_executions WHERE execution_id = ANY($1::text[])
     ORDER BY execution_id, task_name
"""
RENEW_LEASES = """
    UPDATE workflow_executions SET lease_until = $1
     WHERE owner = $2 AND status IN ('Pending', 'Running')
"""
# Run in one transaction: lock the runs concerned in id order, then RELEASE_LEASES.
LOCK_RUNS_OF_OWNER = """
    SELECT id FROM workflow_executions
     WHERE status IN ('Pending', 'Running')
       AND (owner = $1 OR id IN (
           SELECT execution_id FROM task_executions WHERE owner = $1 AND status = 'Running'))
     ORDER BY id
       FOR UPDATE
"""
# Running tasks go back to Ready (their runs' versions move on, so a late step of the
# releasing runner is refused); the count says whether there is new work to announce.
RELEASE_LEASES = """
    WITH tasks AS (
        UPDATE task_executions t SET status = 'Ready', owner = NULL, lease_until = NULL,
               step_version = (SELECT e.version + 1 FROM workflow_executions e WHERE e.id = t.execution_id)
         WHERE owner = $1 AND status = 'Running'
        RETURNING execution_id
    ), runs AS (
        UPDATE workflow_executions
           SET owner = CASE WHEN owner = $1 THEN NULL ELSE owner END,
               lease_until = CASE WHEN owner = $1 THEN NULL ELSE lease_until END,
               version = version + CASE WHEN id IN (SELECT execution_id FROM tasks) THEN 1 ELSE 0 END
         WHERE status IN ('Pending', 'Running')
           AND (owner = $1 OR id IN (SELECT execution_id FROM tasks))
    )
    SELECT count(*) FROM tasks
"""

# --- work shared by task ------------------------------------------------------------
# Locks, everywhere: a run's row before its task rows, and several runs' rows in id order
# (WRITE_STATEMENTS and RELEASE_LEASES lock run rows, in id order, first), so no two statements
# wait for each other in a cycle. Claims wait for no lock at all (SKIP LOCKED): claiming a Ready task
# locks its row only; taking over a task whose lease expired also locks its run's row, to
# bump the run's version (a late step of the old claimer is then refused), and so passes
# over runs whose step is in flight.
#
# Oldest runs first. A row whose claim committed meanwhile is re-checked against the WHERE
# clause (READ COMMITTED), so two claimers never get the same task.
#
# A take-over looks its rows up first, in one scan of ix_tasks_claimable (`candidate`,
# materialized), and only then joins them with their runs. Left to the planner, it went from
# each unfinished run to a scan of every index entry of the status sought: the index keeps
# an entry for each version of a row that ever had it (each task goes Running) until the
# table is vacuumed, so that was runs in flight x versions written, and grew with both
# (measured: 425 ms per take-over with 128 runs in flight and 36,000 such entries, each
# runner looking once a second). A claim of Ready tasks keeps the join from the runs: looked
# up first, the Ready rows cost a visit of every version that was ever Ready (every task
# left for claims is), at each claim: 15.6 ms per claim (p90 46 ms) instead of 2.7 ms (p90
# 3.8 ms) with 32 runs of 8 claimed leaves in flight, a third fewer runs/s.
# $1 now, $2 owner, $3 workflow names, $4 limit, $5 lease until, $6 task names (NULL: any).
_CLAIM = """
    WITH {candidates}pick AS (
        SELECT t.execution_id, t.task_name, e.version
          FROM {rows} JOIN workflow_executions e ON e.id = t.execution_id
         WHERE {claimable} AND e.status = 'Running' AND e.workflow_name = ANY($3::text[])
           AND ($6::text[] IS NULL OR t.task_name = ANY($6::text[]))
         ORDER BY e.started_at, e.seq, t.task_name
         LIMIT $4
           FOR UPDATE OF {locked} SKIP LOCKED
    ), claimed AS (
        UPDATE task_executions t
           SET status = 'Running', attempt = t.attempt + 1, started_at = $1, not_before = NULL,
               owner = $2, lease_until = $5{step_version}
          FROM pick WHERE t.execution_id = pick.execution_id AND t.task_name = pick.task_name
        RETURNING {returning}
    ){bump}
    SELECT {columns} FROM claimed
"""
# Each claimed row comes with its run's version as of the claim (after the bump, for a
# take-over), so that the claimer knows whether what it holds of the run is current.
_TAKEN_OVER = "t.status = 'Running' AND (t.lease_until IS NULL OR t.lease_until < $1)"
CLAIM_READY_TASKS = _CLAIM.format(
    candidates="", rows="task_executions t",
    claimable="t.status = 'Ready' AND (t.not_before IS NULL OR t.not_before <= $1)",
    locked="t", bump="", step_version="", returning=f"{_T_TASK_COLUMNS}, pick.version",
    columns=f"{TASK_COLUMNS}, version",
)
TAKE_OVER_TASKS = _CLAIM.format(
    candidates=f"candidate AS MATERIALIZED (SELECT t.execution_id, t.task_name FROM task_executions t WHERE {_TAKEN_OVER}), ",
    rows="candidate c JOIN task_executions t ON t.execution_id = c.execution_id AND t.task_name = c.task_name",
    claimable=_TAKEN_OVER,
    locked="t, e", step_version=", step_version = pick.version + 1",
    returning=f"{_T_TASK_COLUMNS}, pick.version + 1 AS version", columns=f"{TASK_COLUMNS}, version",
    bump="""
    , bumped AS (
        UPDATE workflow_executions SET version = version + 1
         WHERE id IN (SELECT execution_id FROM claimed)
    )""",
)
LOCK_RUN_FOR_STEP = f"SELECT {EXECUTION_COLUMNS}, version FROM workflow_executions WHERE id = $1 FOR UPDATE"
# The task rows of runs $1 changed after the versions $2 (-1: every row), and rows $3.
SELECT_TASKS_CHANGED_SINCE = f"""
    SELECT {_T_TASK_COLUMNS}
      FROM task_executions t JOIN unnest($1::text[], $2::bigint[]) AS k (id, since)
        ON t.execution_id = k.id
     WHERE t.step_version > k.since OR t.task_name = ANY($3::text[])
     ORDER BY t.execution_id, t.task_name
"""
# Rows locked by a step being written are passed over (SKIP LOCKED): that step rewrites
# them, and a renewal waiting for it while holding other rows could close a cycle with a
# group of steps (WRITE_STATEMENTS lock many runs' rows).
RENEW_TASK_LEASES = """
    WITH held AS (
        SELECT t.execution_id, t.task_name
          FROM task_executions t
          JOIN unnest($3::text[], $4::text[]) AS k (execution_id, task_name)
            ON t.execution_id = k.execution_id AND t.task_name = k.task_name
         WHERE t.owner = $2 AND t.status = 'Running'
           FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE task_executions t SET lease_until = $1
      FROM held WHERE t.execution_id = held.execution_id AND t.task_name = held.task_name
"""
ENDED_RUNS = """
    SELECT i.id FROM unnest($1::text[]) AS i (id)
     WHERE NOT EXISTS (
         SELECT 1 FROM workflow_executions e
          WHERE e.id = i.id AND e.status IN ('Pending', 'Running'))
"""
NOTIFY = "SELECT pg_notify($1::text, $2::text)"

# run control ---------------------------------------------------------------------------
# A run is cancelled in one statement: its row first (locked, version bumped, so a late step
# of whoever executes it is refused), then its unfinished tasks and its fires; executors
# hear of it on channel $3 ('d' || id) or at their next lease renewal.
CANCEL_EXECUTION = """
    WITH run AS (
        UPDATE workflow_executions e
           SET status = 'Cancelled', completed_at = $2, error_message = 'Cancelled',
               owner = NULL, lease_until = NULL, version = e.version + 1,
               final_context = COALESCE(
                   (SELECT t.output_context FROM task_executions t
                     WHERE t.execution_id = e.id AND t.status = 'Completed'
                     ORDER BY t.finish_seq DESC, t.task_name DESC LIMIT 1),
                   e.input_context)
         WHERE e.id = $1 AND e.status IN ('Pending', 'Running')
        RETURNING e.id, e.version
    ), tasks AS (
        UPDATE task_executions t
           SET status = 'Cancelled', completed_at = $2, owner = NULL, lease_until = NULL,
               step_version = run.version,
               error_message = CASE WHEN t.status = 'Running' THEN 'Cancelled while running' END
          FROM run
         WHERE t.execution_id = run.id AND t.status IN ('NotStarted', 'Ready', 'Running')
    ), fires AS (
        UPDATE schedule_executions SET completed_at = $2, updated_at = $2
         WHERE completed_at IS NULL AND workflow_execution_id IN (SELECT id FROM run)
    ), ended AS (
        SELECT pg_notify($3::text, 'd' || id) FROM run
    )
    SELECT (SELECT count(*) FROM run), (SELECT count(*) FROM ended),
           (SELECT status FROM workflow_executions WHERE id = $1)
"""
LOCK_RUN_STATUS = "SELECT status FROM workflow_executions WHERE id = $1 FOR UPDATE"
RESET_TASKS_FOR_RETRY = """
    UPDATE task_executions t
       SET status = 'NotStarted', attempt_base = attempt, not_before = NULL, started_at = NULL,
           completed_at = NULL, output_context = NULL, error_message = NULL, finish_seq = NULL,
           owner = NULL, lease_until = NULL,
           step_version = (SELECT e.version + 1 FROM workflow_executions e WHERE e.id = t.execution_id)
     WHERE execution_id = $1 AND status IN ('Failed', 'Skipped', 'Cancelled')
"""
# The status: Running, or Pending until its first step (see RunStore.reset_for_retry).
REOPEN_EXECUTION = """
    UPDATE workflow_executions
       SET status = $4, completed_at = NULL, error_message = NULL, final_context = NULL,
           owner = $2, lease_until = $3, version = version + 1
     WHERE id = $1
"""
# Runs reopened for whichever runner has their workflow (Pending), held by no live lease,
# oldest first; claimed as CLAIM_ORPHANS claims (two claimers never get the same run), they
# stay Pending until their first step is written.
CLAIM_PENDING = """
    WITH pending AS (
        SELECT id FROM workflow_executions
         WHERE status = 'Pending' AND (owner IS NULL OR lease_until IS NULL OR lease_until < $1)
           AND workflow_name = ANY($2::text[])
         ORDER BY started_at, seq
         LIMIT $5
         FOR UPDATE SKIP LOCKED
    )
    UPDATE workflow_executions e SET owner = $3, lease_until = $4
      FROM pending WHERE e.id = pending.id
    RETURNING e.id
"""
# Runs $1 with their versions and, for each, the task rows changed after version $2 (-1:
# every row) and rows $3: one statement, so one snapshot. A run's columns come with each of
# its task rows (or once, with NULL task columns, when none is selected).
SELECT_RUNS = f"""
    SELECT {', '.join('e.' + c.strip() for c in EXECUTION_COLUMNS.split(','))}, e.version, {_T_TASK_COLUMNS}
      FROM workflow_executions e
      JOIN unnest($1::text[], $2::bigint[]) AS k (id, since) ON e.id = k.id
      LEFT JOIN task_executions t
        ON t.execution_id = e.id AND (t.step_version > k.since OR t.task_name = ANY($3::text[]))
     ORDER BY e.id, t.task_name
"""


def _list_executions(where: str, filters: int) -> str:
    return f"""
    SELECT {EXECUTION_COLUMNS} FROM workflow_executions {where}
     ORDER BY started_at DESC, seq DESC
     LIMIT ${filters + 1} OFFSET ${filters + 2}
"""
# Two statements rather than "(? IS NULL OR ...)": each can count over an index.
COUNT_EXECUTIONS = "SELECT status, COUNT(*) FROM workflow_executions GROUP BY status"
COUNT_EXECUTIONS_OF_WORKFLOW = """
    SELECT status, COUNT(*) FROM workflow_executions WHERE workflow_name = $1 GROUP BY status
"""


# One statement per filter (a `$1 IS NULL OR` filter defeats the index once the prepared
# statement gets a generic plan), keyed by (workflow filter given, status filter given);
# parameters: the given filters, limit, offset.
LIST_EXECUTIONS = {
    (False, False): _list_executions("", 0),
    (True, False): _list_executions("WHERE workflow_name = $1", 1),
    (False, True): _list_executions("WHERE status = $1", 1),
    (True, True): _list_executions("WHERE workflow_name = $1 AND status = $2", 2),
}

# triggers ---------------------------------------------------------------------------
TRIGGER_COLUMNS = (
    "id, trigger_name, workflow_name, poll_interval_ms, allow_concurrent, enabled, "
    "last_poll_at, created_at, updated_at"
)
UPSERT_TRIGGER = f"""
    INSERT INTO trigger_schedules
        (id, trigger_name, workflow_name, poll_interval_ms, allow_concurrent, enabled,
         created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, TRUE, $6, $6)
    ON CONFLICT (trigger_name) DO UPDATE SET
        workflow_name = excluded.workflow_name,
        poll_interval_ms = excluded.poll_interval_ms,
        allow_concurrent = excluded.allow_concurrent,
        updated_at = excluded.updated_at
    RETURNING {TRIGGER_COLUMNS}
"""
SELECT_TRIGGER = f"SELECT {TRIGGER_COLUMNS} FROM trigger_schedules WHERE trigger_name = $1"
LIST_TRIGGERS = f"""
    SELECT {TRIGGER_COLUMNS} FROM trigger_schedules
     ORDER BY created_at DESC, seq DESC LIMIT $1 OFFSET $2
"""
LIST_ENABLED_TRIGGERS = f"""
    SELECT {TRIGGER_COLUMNS} FROM trigger_schedules WHERE enabled
     ORDER BY created_at, seq LIMIT $1 OFFSET $2
"""
SET_TRIGGER_ENABLED = """
    UPDATE trigger_schedules SET enabled = $1, updated_at = $2 WHERE trigger_name = $3
"""
RECORD_TRIGGER_POLLS = """
    UPDATE trigger_schedules t SET last_poll_at = p.at
      FROM unnest($1::text[], $2::float8[]) AS p (trigger_name, at)
     WHERE t.trigger_name = p.trigger_name
"""

FIRE_COLUMNS = (
    "id, schedule_id, kind, context_hash, scheduled_time, claimed_at, "
    "workflow_execution_id, completed_at, created_at, updated_at, outcome, error, attempts"
)
_F_FIRE_COLUMNS = ", ".join("f." + c.strip() for c in FIRE_COLUMNS.split(","))
# Closing and listing in one statement: the SELECT sees the rows as they were before the
# UPDATE (one snapshot), so the rows it closes are excluded explicitly.
OPEN_TRIGGER_FIRES = """
    WITH closed AS (
        UPDATE schedule_executions SET completed_at = $1, updated_at = $1
         WHERE completed_at IS NULL AND kind = 'trigger' AND workflow_execution_id IS NOT NULL
           AND NOT EXISTS (
               SELECT 1 FROM workflow_executions e
                WHERE e.id = schedule_executions.workflow_execution_id
                  AND e.status IN ('Pending', 'Running'))
        RETURNING id
    )
    SELECT f.id, t.trigger_name, f.context_hash, f.workflow_execution_id
      FROM schedule_executions f JOIN trigger_schedules t ON f.schedule_id = t.id
     WHERE f.completed_at IS NULL AND f.kind = 'trigger'
       AND f.id NOT IN (SELECT id FROM closed)
     ORDER BY f.created_at, f.seq
"""
TRIGGER_HISTORY = f"""
    SELECT {_F_FIRE_COLUMNS}
      FROM schedule_executions f JOIN trigger_schedules t ON f.schedule_id = t.id
     WHERE t.trigger_name = $1
     ORDER BY f.created_at DESC, f.seq DESC LIMIT $2 OFFSET $3
"""

# cron -------------------------------------------------------------------------------
CRON_COLUMNS = (
    "id, workflow_name, instance_name, cron_expression, timezone, enabled, catchup_policy, "
    "params, next_run_at, last_run_at, created_at, updated_at"
)
INSERT_CRON = f"""
    INSERT INTO cron_schedules ({CRON_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
    ON CONFLICT DO NOTHING
    RETURNING id
"""
SELECT_CRON = f"SELECT {CRON_COLUMNS} FROM cron_schedules WHERE id = $1"
SELECT_CRON_INSTANCE_FOR_UPDATE = f"""
    SELECT {CRON_COLUMNS} FROM cron_schedules WHERE workflow_name = $1 AND instance_name = $2
       FOR UPDATE
"""
UPDATE_CRON_INSTANCE = """
    UPDATE cron_schedules
       SET cron_expression = $1, timezone = $2, params = $3, next_run_at = $4, updated_at = $5
     WHERE id = $6
"""
LIST_CRON = f"""
    SELECT {CRON_COLUMNS} FROM cron_schedules WHERE (NOT $1::boolean OR enabled)
     ORDER BY created_at DESC, seq DESC LIMIT $2 OFFSET $3
"""
UPDATE_CRON = """
    UPDATE cron_schedules SET cron_expression = $1, timezone = $2, next_run_at = $3, updated_at = $4
     WHERE id = $5
    RETURNING id
"""
SET_CRON_ENABLED = "UPDATE cron_schedules SET enabled = $1, updated_at = $2 WHERE id = $3"
DELETE_CRON = """
    WITH fires AS (DELETE FROM schedule_executions WHERE schedule_id = $1 AND kind = 'cron')
    DELETE FROM cron_schedules WHERE id = $1
"""
DUE_CRON = f"""
    SELECT {CRON_COLUMNS} FROM cron_schedules WHERE enabled AND next_run_at <= $1
     ORDER BY next_run_at, seq
"""
NEXT_CRON_RUN = "SELECT MIN(next_run_at) FROM cron_schedules WHERE enabled"
# A concurrent claimer of the same slots waits for this row lock, then re-checks
# `next_run_at = expected` against the committed row and updates nothing: slots fire once.
ADVANCE_CRON = """
    UPDATE cron_schedules SET next_run_at = $1, last_run_at = $2, updated_at = $2
     WHERE id = $3 AND next_run_at = $4 AND enabled
    RETURNING id
"""
INSERT_CRON_FIRES = """
    INSERT INTO schedule_executions
        (id, schedule_id, kind, scheduled_time, claimed_at, completed_at, outcome,
         created_at, updated_at)
    SELECT s.id, $2, 'cron', s.slot, $3, $4, $5, $3, $3
      FROM unnest($1::text[], $6::float8[]) WITH ORDINALITY AS s (id, slot, n)
     ORDER BY s.n
    ON CONFLICT DO NOTHING
    RETURNING id, scheduled_time
"""
CLOSE_SCHEDULE_FIRE = """
    UPDATE schedule_executions SET completed_at = $1, updated_at = $1, outcome = $2, error = $3
     WHERE id = $4
"""
CRON_HISTORY = f"""
    SELECT {FIRE_COLUMNS} FROM schedule_executions WHERE schedule_id = $1 AND kind = 'cron'
     ORDER BY scheduled_time DESC, seq DESC LIMIT $2 OFFSET $3
"""
# A slot skipped by the catch-up policy never was an execution: it is history only.
SCHEDULE_STATS = """
    SELECT COUNT(*),
           COUNT(*) FILTER (WHERE workflow_execution_id IS NOT NULL),
           COUNT(*) FILTER (WHERE workflow_execution_id IS NULL AND outcome IS NULL
                              AND claimed_at < $1)
      FROM schedule_executions
     WHERE claimed_at >= $2 AND (outcome IS NULL OR outcome <> 'skipped')
"""
CLOSE_ENDED_CRON_FIRES = """
    UPDATE schedule_executions SET completed_at = $1, updated_at = $1
     WHERE completed_at IS NULL AND kind = 'cron' AND workflow_execution_id IS NOT NULL
       AND NOT EXISTS (
           SELECT 1 FROM workflow_executions e
            WHERE e.id = schedule_executions.workflow_execution_id
              AND e.status IN ('Pending', 'Running'))
"""
ABANDON_LOST_CRON_FIRES = """
    UPDATE schedule_executions SET completed_at = $1, updated_at = $1, outcome = 'abandoned',
           error = 'hand-off lost: no run was started for this slot'
     WHERE completed_at IS NULL AND kind = 'cron' AND workflow_execution_id IS NULL
       AND claimed_at < $2 AND (created_at < $3 OR attempts >= $4)
"""
# SKIP LOCKED: two runners recovering at once never re-fire the same lost slot.
SELECT_LOST_CRON_FIRES = f"""
    SELECT {_F_FIRE_COLUMNS},
           {', '.join('s.' + c.strip() for c in CRON_COLUMNS.split(','))}
      FROM schedule_executions f JOIN cron_schedules s ON f.schedule_id = s.id
     WHERE f.completed_at IS NULL AND f.kind = 'cron' AND f.workflow_execution_id IS NULL
       AND f.claimed_at < $1
     ORDER BY f.claimed_at, f.seq
       FOR UPDATE OF f SKIP LOCKED
"""
COUNT_FIRE_ATTEMPTS = """
    UPDATE schedule_executions SET attempts = attempts + 1, claimed_at = $1, updated_at = $1
     WHERE id = ANY($2::text[])
"""


# tenants (DatabaseAdmin) --------------------------------------------------------------
# {schema} and {role}: quote_ident() of names checked by cloaca._tenancy.check_identifier.
ROLE_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1::text)"
CURRENT_USER = "SELECT current_user"
# DDL takes no parameters: the server quotes a password that is not sent as a verifier.
CREATE_ROLE_QUOTED = "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)"
CREATE_ROLE_WITH_VERIFIER = "CREATE ROLE {role} LOGIN PASSWORD '{verifier}'"  # a SCRAM verifier: [A-Za-z0-9+/=:$-]
GRANT_SCHEMA_TO_TENANT = "GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}"
DEFAULT_PRIVILEGES_TO_TENANT = "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT ALL ON {kind} TO {role}"
GRANT_ROLE_TO_ME = "GRANT {role} TO CURRENT_USER"
SET_LOCAL_ROLE = "SET LOCAL ROLE {role}"
RESET_ROLE = "RESET ROLE"
REVOKE_ROLE_FROM_ME = "REVOKE {role} FROM CURRENT_USER"
GRANT_ALL_TO_TENANT = "GRANT ALL ON ALL {kind} IN SCHEMA {schema} TO {role}"
PRIVILEGE_KINDS = ("TABLES", "SEQUENCES")
REVOKE_FROM_TENANT = (
    "REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}",
    "REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}",
    "REVOKE ALL ON SCHEMA {schema} FROM {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON TABLES FROM {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON SEQUENCES FROM {role}",
)
DROP_SCHEMA_CASCADE = "DROP SCHEMA IF EXISTS {schema} CASCADE"
# What the role still owns or was granted in this database would block DROP ROLE.
DROP_OWNED_BY = "DROP OWNED BY {role} CASCADE"
DROP_ROLE = "DROP ROLE {role}"


def quote_ident(name: str) -> str:
    """`name` as a quoted SQL identifier (names are validated before they get here)."""
    return '"' + name.replace('"', '""') + '"'


# reactors ---------------------------------------------------------------------------
SUBSCRIPTION_COLUMNS = (
    "id, reactor_name, workflow_name, tenant_id, enabled, last_seen_fired_at, "
    "last_seen_firing_id, created_at, updated_at, predicate_expression, predicate_degraded, "
    "predicate_error_count, last_predicate_error, last_predicate_error_at, predicate_error_firing_id"
)
UPSERT_SUBSCRIPTION = """
    INSERT INTO reactor_trigger_subscriptions
        (id, reactor_name, workflow_name, tenant_id, predicate_expression, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $6)
    ON CONFLICT (reactor_name, workflow_name, tenant_id) DO UPDATE SET
        predicate_expression = excluded.predicate_expression, updated_at = excluded.updated_at
    RETURNING id
"""
DELETE_SUBSCRIPTION = """
    DELETE FROM reactor_trigger_subscriptions
    WHERE reactor_name = $1 AND workflow_name = $2 AND tenant_id = $3
"""
LIST_SUBSCRIPTIONS = f"""
    SELECT {SUBSCRIPTION_COLUMNS} FROM reactor_trigger_subscriptions
    WHERE enabled AND ($1::text IS NULL OR tenant_id = $1) ORDER BY created_at, id
"""
CLAIM_SUBSCRIPTIONS = f"""
    UPDATE reactor_trigger_subscriptions SET lease_owner = $1, lease_until = $2
    WHERE enabled AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < $3)
    RETURNING {SUBSCRIPTION_COLUMNS}
"""
RELEASE_SUBSCRIPTIONS = """
    UPDATE reactor_trigger_subscriptions SET lease_owner = NULL, lease_until = NULL
    WHERE lease_owner = $1
"""
SAVE_SUBSCRIPTION_PROGRESS = """
    UPDATE reactor_trigger_subscriptions SET
        last_seen_fired_at = $1, last_seen_firing_id = $2, predicate_degraded = $3,
        predicate_error_count = $4, last_predicate_error = $5, last_predicate_error_at = $6,
        predicate_error_firing_id = $7, updated_at = $8
    WHERE id = $9
"""
INSERT_FIRING = """
    INSERT INTO reactor_firings (id, tenant_id, reactor_name, payload, fired_at)
    VALUES ($1, $2, $3, $4, $5)
"""
FIRING_COLUMNS = "id, tenant_id, reactor_name, payload, fired_at"
FIRINGS_AFTER = f"""
    SELECT {FIRING_COLUMNS} FROM reactor_firings
    WHERE tenant_id = $1 AND reactor_name = $2
      AND ($3::double precision IS NULL OR (fired_at, id) > ($3, $4::text))
    ORDER BY fired_at, id LIMIT $5
"""
PRUNE_FIRINGS = "DELETE FROM reactor_firings WHERE fired_at < $1"
SAVE_REACTOR_STATE = """
    INSERT INTO reactor_state (tenant_id, reactor_name, state, updated_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (tenant_id, reactor_name) DO UPDATE SET
        state = excluded.state, updated_at = excluded.updated_at
"""
LOAD_REACTOR_STATE = "SELECT state FROM reactor_state WHERE tenant_id = $1 AND reactor_name = $2"
# {table} is accumulator_checkpoints or state_accumulator_buffers (chosen in code, never input).
SAVE_ACCUMULATOR_STATE = """
    INSERT INTO {table} (tenant_id, accumulator_name, data, updated_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (tenant_id, accumulator_name) DO UPDATE SET
        data = excluded.data, updated_at = excluded.updated_at
"""
LOAD_ACCUMULATOR_STATE = "SELECT data FROM {table} WHERE tenant_id = $1 AND accumulator_name = $2"
ACCUMULATOR_TABLES = {"checkpoint": "accumulator_checkpoints", "window": "state_accumulator_buffers"}
REACTOR_TENANTS = """
    SELECT tenant_id FROM reactor_state
    UNION SELECT tenant_id FROM accumulator_checkpoints
    UNION SELECT tenant_id FROM state_accumulator_buffers
    ORDER BY tenant_id
"""
