"""Every SQL statement of the SQLite store, named, in one place."""

from __future__ import annotations

# Migrations: (version, script). A database records the highest version applied.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE workflow_executions (
            id               TEXT PRIMARY KEY,
            workflow_name    TEXT NOT NULL,
            workflow_version TEXT NOT NULL,
            status           TEXT NOT NULL,
            input_context    TEXT NOT NULL,
            final_context    TEXT,
            error_message    TEXT,
            started_at       REAL NOT NULL,
            completed_at     REAL,
            owner            TEXT,
            lease_until      REAL
        );
        CREATE INDEX ix_executions_started ON workflow_executions (started_at);
        CREATE INDEX ix_executions_unfinished ON workflow_executions (status)
            WHERE status IN ('Pending', 'Running');

        CREATE TABLE task_executions (
            execution_id   TEXT NOT NULL,
            task_name      TEXT NOT NULL,
            status         TEXT NOT NULL,
            attempt        INTEGER NOT NULL DEFAULT 0,
            not_before     REAL,
            started_at     REAL,
            completed_at   REAL,
            output_context TEXT,
            error_message  TEXT,
            finish_seq     INTEGER,
            PRIMARY KEY (execution_id, task_name)
        ) WITHOUT ROWID;

        CREATE TABLE trigger_schedules (
            id               TEXT PRIMARY KEY,
            trigger_name     TEXT NOT NULL UNIQUE,
            workflow_name    TEXT NOT NULL,
            poll_interval_ms INTEGER NOT NULL,
            allow_concurrent INTEGER NOT NULL,
            enabled          INTEGER NOT NULL DEFAULT 1,
            last_poll_at     REAL,
            created_at       REAL NOT NULL,
            updated_at       REAL NOT NULL
        );

        CREATE TABLE schedule_executions (
            id                    TEXT PRIMARY KEY,
            schedule_id           TEXT NOT NULL,
            kind                  TEXT NOT NULL,
            context_hash          TEXT,
            scheduled_time        REAL,
            claimed_at            REAL NOT NULL,
            workflow_execution_id TEXT,
            completed_at          REAL,
            created_at            REAL NOT NULL,
            updated_at            REAL NOT NULL
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
            id              TEXT PRIMARY KEY,
            workflow_name   TEXT NOT NULL,
            instance_name   TEXT,
            cron_expression TEXT NOT NULL,
            timezone        TEXT NOT NULL,
            enabled         INTEGER NOT NULL DEFAULT 1,
            catchup_policy  TEXT NOT NULL DEFAULT 'skip',
            params          TEXT,
            next_run_at     REAL NOT NULL,
            last_run_at     REAL,
            created_at      REAL NOT NULL,
            updated_at      REAL NOT NULL
        );
        CREATE UNIQUE INDEX ux_cron_instance ON cron_schedules (workflow_name, instance_name)
            WHERE instance_name IS NOT NULL;
        CREATE INDEX ix_cron_due ON cron_schedules (next_run_at) WHERE enabled = 1;
        ALTER TABLE schedule_executions ADD COLUMN outcome TEXT;
        ALTER TABLE schedule_executions ADD COLUMN error TEXT;
        ALTER TABLE schedule_executions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX ix_fires_lost ON schedule_executions (claimed_at)
            WHERE completed_at IS NULL AND kind = 'cron';
        """,
    ),
    # 3 is PostgreSQL's per-task claims, which SQLite had no use for then (7 adds them).
    (3, ""),
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
            fired_at     REAL NOT NULL
        );
        CREATE INDEX ix_reactor_firings ON reactor_firings (tenant_id, reactor_name, fired_at, id);
        CREATE INDEX ix_reactor_firings_age ON reactor_firings (fired_at);

        CREATE TABLE reactor_trigger_subscriptions (
            id                        TEXT PRIMARY KEY,
            reactor_name              TEXT NOT NULL,
            workflow_name             TEXT NOT NULL,
            tenant_id                 TEXT NOT NULL,
            enabled                   INTEGER NOT NULL DEFAULT 1,
            last_seen_fired_at        REAL,
            last_seen_firing_id       TEXT,
            created_at                REAL NOT NULL,
            updated_at                REAL NOT NULL,
            predicate_expression      TEXT,
            predicate_degraded        INTEGER NOT NULL DEFAULT 0,
            predicate_error_count     INTEGER NOT NULL DEFAULT 0,
            last_predicate_error      TEXT,
            last_predicate_error_at   REAL,
            predicate_error_firing_id TEXT,
            lease_owner               TEXT,
            lease_until               REAL,
            UNIQUE (reactor_name, workflow_name, tenant_id)
        );

        CREATE TABLE reactor_state (
            tenant_id    TEXT NOT NULL,
            reactor_name TEXT NOT NULL,
            state        TEXT NOT NULL,
            updated_at   REAL NOT NULL,
            PRIMARY KEY (tenant_id, reactor_name)
        ) WITHOUT ROWID;

        CREATE TABLE accumulator_checkpoints (
            tenant_id        TEXT NOT NULL,
            accumulator_name TEXT NOT NULL,
            data             TEXT NOT NULL,
            updated_at       REAL NOT NULL,
            PRIMARY KEY (tenant_id, accumulator_name)
        ) WITHOUT ROWID;

        CREATE TABLE state_accumulator_buffers (
            tenant_id        TEXT NOT NULL,
            accumulator_name TEXT NOT NULL,
            data             TEXT NOT NULL,
            updated_at       REAL NOT NULL,
            PRIMARY KEY (tenant_id, accumulator_name)
        ) WITHOUT ROWID;
        """,
    ),
    (
        # History: every filter of LIST_EXECUTIONS reads its page off an index, newest first
        # (each index ends with the rowid, the tie-breaker). The status index also serves
        # the unfinished runs' lookups, so the partial index it replaces goes.
        6,
        """
        CREATE INDEX IF NOT EXISTS ix_executions_workflow
            ON workflow_executions (workflow_name, started_at);
        CREATE INDEX IF NOT EXISTS ix_executions_status ON workflow_executions (status, started_at);
        CREATE INDEX IF NOT EXISTS ix_executions_workflow_status
            ON workflow_executions (workflow_name, status, started_at);
        DROP INDEX IF EXISTS ix_executions_unfinished;
        """,
    ),
    (
        # Work shared by task (WorkSharing.BY_TASK; PostgreSQL's version 3): the run's version
        # (bumped by every step written compare-and-set), who holds each task and until when,
        # and the run version that last changed each task row (0: unchanged since the run
        # began), which lets a claimer read back only what changed since the version it knows.
        # Its index of claimable tasks comes and goes with the way of sharing (CREATE_CLAIM_INDEX).
        7,
        """
        ALTER TABLE workflow_executions ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE task_executions ADD COLUMN owner TEXT;
        ALTER TABLE task_executions ADD COLUMN lease_until REAL;
        ALTER TABLE task_executions ADD COLUMN step_version INTEGER NOT NULL DEFAULT 0;
        """,
    ),
]

# How the file's runners share work (runners of the two kinds on one file would run tasks
# twice): made at every open, as the version table is, whatever the schema's version.
CREATE_SETTINGS_TABLE = "CREATE TABLE IF NOT EXISTS store_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
GET_SETTING = "SELECT value FROM store_settings WHERE name = ?"
SET_SETTING = "INSERT OR REPLACE INTO store_settings (name, value) VALUES (?, ?)"
ANY_UNFINISHED_RUN = "SELECT 1 FROM workflow_executions WHERE status IN ('Pending', 'Running') LIMIT 1"
# The claimable tasks of a file shared by task (made at every open of such a file, dropped
# at every open of a file shared by run, whose runners never read it and would pay for it at
# every task's start and end). Claims find Ready and expired tasks there; a release at
# shutdown finds its Running rows there too (no index on the holder, as PostgreSQL's
# ix_tasks_owner: every step would update it, for the sake of that release).
CREATE_CLAIM_INDEX = """
    CREATE INDEX IF NOT EXISTS ix_tasks_claimable ON task_executions (status, not_before)
        WHERE status IN ('Ready', 'Running')
"""
DROP_CLAIM_INDEX = "DROP INDEX IF EXISTS ix_tasks_claimable"

CREATE_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS cloaca_schema_version (version INTEGER NOT NULL)"
GET_VERSION = "SELECT MAX(version) FROM cloaca_schema_version"
SET_VERSION = "INSERT INTO cloaca_schema_version (version) VALUES (?)"

# runs -------------------------------------------------------------------------------
EXECUTION_COLUMNS = (
    "id, workflow_name, workflow_version, status, input_context, started_at, "
    "final_context, error_message, completed_at, trace_context"
)
TASK_COLUMNS = (
    "execution_id, task_name, status, attempt, not_before, started_at, completed_at, "
    "output_context, error_message, finish_seq, attempt_base, traceback"
)

LINK_FIRE = "UPDATE schedule_executions SET workflow_execution_id = ?, updated_at = ? WHERE id = ?"
INSERT_EXECUTION = f"""
    INSERT INTO workflow_executions ({EXECUTION_COLUMNS}, owner, lease_until)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# The last two values: who holds a Running task and until when (BY_TASK; else NULL).
INSERT_TASK = f"""
    INSERT INTO task_executions ({TASK_COLUMNS}, owner, lease_until)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
SELECT_RUN_OWNER = "SELECT owner, status FROM workflow_executions WHERE id = ?"
SELECT_RUNS_OWNERS = """
    SELECT id, owner, status FROM workflow_executions WHERE id IN (SELECT value FROM json_each(?))
"""
UPDATE_TASK = """
    UPDATE task_executions
       SET status = ?, attempt = ?, not_before = ?, started_at = ?, completed_at = ?,
           output_context = ?, error_message = ?, finish_seq = ?, attempt_base = ?, traceback = ?
     WHERE execution_id = ? AND task_name = ?
"""
# run control ---------------------------------------------------------------------------
SELECT_RUN_STATUS = "SELECT status FROM workflow_executions WHERE id = ?"
# Run control writes the run first (its version bumped, so a late step of whoever executes
# it is refused), then its task rows, marked as changed by that version.
_RUN_VERSION = "(SELECT e.version FROM workflow_executions e WHERE e.id = task_executions.execution_id)"
CANCEL_TASKS = f"""
    UPDATE task_executions
       SET status = 'Cancelled', completed_at = ?, owner = NULL, lease_until = NULL,
           step_version = {_RUN_VERSION},
           error_message = CASE WHEN status = 'Running' THEN 'Cancelled while running' END
     WHERE execution_id = ? AND status IN ('NotStarted', 'Ready', 'Running')
"""
CANCEL_EXECUTION = """
    UPDATE workflow_executions
       SET status = 'Cancelled', completed_at = ?, error_message = 'Cancelled',
           owner = NULL, lease_until = NULL, version = version + 1,
           final_context = COALESCE(
               (SELECT output_context FROM task_executions
                 WHERE execution_id = workflow_executions.id AND status = 'Completed'
                 ORDER BY finish_seq DESC, task_name DESC LIMIT 1),
               input_context)
     WHERE id = ?
"""
RESET_TASKS_FOR_RETRY = f"""
    UPDATE task_executions
       SET status = 'NotStarted', attempt_base = attempt, not_before = NULL, started_at = NULL,
           completed_at = NULL, output_context = NULL, error_message = NULL, finish_seq = NULL,
           owner = NULL, lease_until = NULL, step_version = {_RUN_VERSION}
     WHERE execution_id = ? AND status IN ('Failed', 'Skipped', 'Cancelled')
"""
# The status: Running, or Pending until its first step (see RunStore.reset_for_retry).
REOPEN_EXECUTION = """
    UPDATE workflow_executions
       SET status = ?, completed_at = NULL, error_message = NULL, final_context = NULL,
           owner = ?, lease_until = ?, version = version + 1
     WHERE id = ?
"""
ENDED_RUNS = """
    SELECT i.value FROM json_each(?) AS i
     WHERE NOT EXISTS (
         SELECT 1 FROM workflow_executions e
          WHERE e.id = i.value AND e.status IN ('Pending', 'Running'))
"""
FINISH_EXECUTION = """
    UPDATE workflow_executions
       SET status = ?, final_context = ?, error_message = ?, completed_at = ?,
           owner = NULL, lease_until = NULL
     WHERE id = ?
"""
CLOSE_FIRES_OF_RUN = """
    UPDATE schedule_executions SET completed_at = ?, updated_at = ?
     WHERE workflow_execution_id = ? AND completed_at IS NULL
"""
SELECT_ORPHANS = """
    SELECT id FROM workflow_executions
     WHERE status IN ('Pending', 'Running')
       AND (owner IS NULL OR lease_until IS NULL OR lease_until < ?)
       AND workflow_name IN (SELECT value FROM json_each(?))
"""
CLAIM_EXECUTION = """
    UPDATE workflow_executions SET owner = ?, lease_until = ?, status = 'Running' WHERE id = ?
"""
HOLD_EXECUTION = "UPDATE workflow_executions SET owner = ?, lease_until = ? WHERE id = ?"
# Runs reopened for whichever runner has their workflow (Pending), held by no live lease,
# oldest first: :now, :names (JSON array of workflow names), :limit.
SELECT_PENDING = """
    SELECT id FROM workflow_executions
     WHERE status = 'Pending' AND (owner IS NULL OR lease_until IS NULL OR lease_until < :now)
       AND workflow_name IN (SELECT value FROM json_each(:names))
     ORDER BY started_at, rowid
     LIMIT :limit
"""
RENEW_LEASES = """
    UPDATE workflow_executions SET lease_until = ?
     WHERE owner = ? AND status IN ('Pending', 'Running')
"""
RELEASE_LEASES = """
    UPDATE workflow_executions SET owner = NULL, lease_until = NULL
     WHERE owner = ? AND status IN ('Pending', 'Running')
"""
# Releasing (BY_TASK): the owner's Running tasks go back to Ready, their runs' versions move
# on first (so a late step of the releasing runner is refused) and mark the rows released.
# The Running rows are found through ix_tasks_claimable (see _PICK for the IN term).
_OWNED = "status IN ('Ready', 'Running') AND status = 'Running' AND owner = ?"
BUMP_RUNS_OF_OWNED_TASKS = f"""
    UPDATE workflow_executions SET version = version + 1
     WHERE status IN ('Pending', 'Running')
       AND id IN (SELECT execution_id FROM task_executions WHERE {_OWNED})
"""
RELEASE_TASKS = f"""
    UPDATE task_executions
       SET status = 'Ready', owner = NULL, lease_until = NULL, step_version = {_RUN_VERSION}
     WHERE {_OWNED}
"""
SELECT_EXECUTION = f"SELECT {EXECUTION_COLUMNS}, version FROM workflow_executions WHERE id = ?"
SELECT_TASKS = f"SELECT {TASK_COLUMNS} FROM task_executions WHERE execution_id = ? ORDER BY task_name"
# The task rows of run ? changed after version ? (-1: every row), and the rows named in the
# JSON array ?.
SELECT_TASKS_CHANGED_SINCE = f"""
    SELECT {TASK_COLUMNS} FROM task_executions
     WHERE execution_id = ?
       AND (step_version > ? OR task_name IN (SELECT value FROM json_each(?)))
     ORDER BY task_name
"""

# --- work shared by task ----------------------------------------------------------------
# Every write transaction holds the database's one write lock (BEGIN IMMEDIATE), so two
# claimers, in this process or another, never see the same row claimable: no row locks needed.
#
# The tasks to claim, oldest runs first: :now, :names (JSON array of workflow names),
# :only (JSON array of task names, or NULL for any), :limit. The status IN (...) term, implied
# by {claimable}, is spelled out so that SQLite reads the candidates off the partial index
# ix_tasks_claimable (it proves a partial index usable from identical terms only) instead of
# going through every task of every running run.
_PICK = """
    SELECT t.execution_id, t.task_name
      FROM task_executions t JOIN workflow_executions e ON e.id = t.execution_id
     WHERE t.status IN ('Ready', 'Running') AND {claimable} AND e.status = 'Running'
       AND e.workflow_name IN (SELECT value FROM json_each(:names))
       AND (:only IS NULL OR t.task_name IN (SELECT value FROM json_each(:only)))
     ORDER BY e.started_at, e.rowid, t.task_name
     LIMIT :limit
"""
PICK_READY_TASKS = _PICK.format(
    claimable="t.status = 'Ready' AND (t.not_before IS NULL OR t.not_before <= :now)"
)
PICK_EXPIRED_TASKS = _PICK.format(
    claimable="t.status = 'Running' AND (t.lease_until IS NULL OR t.lease_until < :now)"
)
# A take-over moves the run's version on (a late step of the old claimer is then refused).
BUMP_RUN_VERSIONS = """
    UPDATE workflow_executions SET version = version + 1
     WHERE id IN (SELECT value FROM json_each(?))
"""
# The picked tasks (:keys, a JSON array of [execution id, task name]) become Running under
# :owner until :lease_until, their attempt counted; taken over (:take_over), they are marked
# as changed by their run's new version.
CLAIM_TASKS = f"""
    UPDATE task_executions
       SET status = 'Running', attempt = attempt + 1, started_at = :now, not_before = NULL,
           owner = :owner, lease_until = :lease_until,
           step_version = CASE WHEN :take_over THEN {_RUN_VERSION} ELSE step_version END
     WHERE (execution_id, task_name) IN (
         SELECT value ->> 0, value ->> 1 FROM json_each(:keys))
    RETURNING {TASK_COLUMNS}
"""
SELECT_VERSIONS = """
    SELECT id, version FROM workflow_executions WHERE id IN (SELECT value FROM json_each(?))
"""
# One scheduling step, compare-and-set on the run's version: the run's row first (nothing
# else is written when no row matched), then its task rows.
# (The first step of a Pending run, reopened for any runner, starts it: it becomes Running.)
STEP_RUN = """
    UPDATE workflow_executions SET version = version + 1
     WHERE id = ? AND version = ? AND status IN ('Pending', 'Running')
    RETURNING status
"""
# Only when STEP_RUN found the run Pending: assigning `status` at every step, even the same
# value, would rewrite the run's entries in every index on status (a by-task chain 1.5x slower).
START_PENDING_RUN = "UPDATE workflow_executions SET status = 'Running' WHERE id = ?"
STEP_AND_FINISH_RUN = """
    UPDATE workflow_executions
       SET version = version + 1, status = ?, final_context = ?, error_message = ?,
           completed_at = ?, owner = NULL, lease_until = NULL
     WHERE id = ? AND version = ? AND status IN ('Pending', 'Running')
    RETURNING status
"""
# A Running row is held by the step's writer (owner, lease until); other rows by nobody.
STEP_TASK = """
    UPDATE task_executions
       SET status = ?, attempt = ?, not_before = ?, started_at = ?, completed_at = ?,
           output_context = ?, error_message = ?, finish_seq = ?, attempt_base = ?, traceback = ?,
           owner = ?, lease_until = ?, step_version = ?
     WHERE execution_id = ? AND task_name = ?
"""
RENEW_TASK_LEASE = """
    UPDATE task_executions SET lease_until = ?
     WHERE execution_id = ? AND task_name = ? AND owner = ? AND status = 'Running'
"""


def _list_executions(where: str) -> str:
    return f"""
    SELECT {EXECUTION_COLUMNS} FROM workflow_executions {where}
     ORDER BY started_at DESC, rowid DESC
     LIMIT ? OFFSET ?
"""
# Two statements rather than "(? IS NULL OR ...)": each can count over an index.
COUNT_EXECUTIONS = "SELECT status, COUNT(*) FROM workflow_executions GROUP BY status"
COUNT_EXECUTIONS_OF_WORKFLOW = """
    SELECT status, COUNT(*) FROM workflow_executions WHERE workflow_name = ? GROUP BY status
"""


# One statement per filter (a `? IS NULL OR` filter would defeat the index), keyed by
# (workflow filter given, status filter given); parameters: the given filters, limit, offset.
LIST_EXECUTIONS = {
    (False, False): _list_executions(""),
    (True, False): _list_executions("WHERE workflow_name = ?"),
    (False, True): _list_executions("WHERE status = ?"),
    (True, True): _list_executions("WHERE workflow_name = ? AND status = ?"),
}

# triggers ---------------------------------------------------------------------------
TRIGGER_COLUMNS = (
    "id, trigger_name, workflow_name, poll_interval_ms, allow_concurrent, enabled, "
    "last_poll_at, created_at, updated_at"
)
UPSERT_TRIGGER = """
    INSERT INTO trigger_schedules
        (id, trigger_name, workflow_name, poll_interval_ms, allow_concurrent, enabled,
         created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, 1, ?, ?)
    ON CONFLICT (trigger_name) DO UPDATE SET
        workflow_name = excluded.workflow_name,
        poll_interval_ms = excluded.poll_interval_ms,
        allow_concurrent = excluded.allow_concurrent,
        updated_at = excluded.updated_at
"""
SELECT_TRIGGER = f"SELECT {TRIGGER_COLUMNS} FROM trigger_schedules WHERE trigger_name = ?"
LIST_TRIGGERS = f"""
    SELECT {TRIGGER_COLUMNS} FROM trigger_schedules
     ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?
"""
LIST_ENABLED_TRIGGERS = f"""
    SELECT {TRIGGER_COLUMNS} FROM trigger_schedules WHERE enabled = 1
     ORDER BY created_at, rowid LIMIT ? OFFSET ?
"""
SET_TRIGGER_ENABLED = """
    UPDATE trigger_schedules SET enabled = ?, updated_at = ? WHERE trigger_name = ?
"""
RECORD_TRIGGER_POLL = "UPDATE trigger_schedules SET last_poll_at = ? WHERE trigger_name = ?"

FIRE_COLUMNS = (
    "id, schedule_id, kind, context_hash, scheduled_time, claimed_at, "
    "workflow_execution_id, completed_at, created_at, updated_at, outcome, error, attempts"
)
INSERT_TRIGGER_FIRE = """
    INSERT INTO schedule_executions
        (id, schedule_id, kind, context_hash, claimed_at, workflow_execution_id, completed_at,
         created_at, updated_at)
    SELECT ?, id, 'trigger', ?, ?, ?, ?, ?, ? FROM trigger_schedules WHERE trigger_name = ?
"""
OPEN_FIRE_EXISTS = """
    SELECT 1 FROM schedule_executions f JOIN trigger_schedules t ON f.schedule_id = t.id
     WHERE t.trigger_name = ? AND f.context_hash = ? AND f.completed_at IS NULL
     LIMIT 1
"""
CLOSE_ENDED_FIRES = """
    UPDATE schedule_executions SET completed_at = ?, updated_at = ?
     WHERE completed_at IS NULL AND kind = 'trigger' AND workflow_execution_id IS NOT NULL
       AND NOT EXISTS (
           SELECT 1 FROM workflow_executions e
            WHERE e.id = schedule_executions.workflow_execution_id
              AND e.status IN ('Pending', 'Running'))
"""
SELECT_OPEN_TRIGGER_FIRES = """
    SELECT f.id, t.trigger_name, f.context_hash, f.workflow_execution_id
      FROM schedule_executions f JOIN trigger_schedules t ON f.schedule_id = t.id
     WHERE f.completed_at IS NULL AND f.kind = 'trigger'
"""
TRIGGER_HISTORY = f"""
    SELECT {', '.join('f.' + c.strip() for c in FIRE_COLUMNS.split(','))}
      FROM schedule_executions f JOIN trigger_schedules t ON f.schedule_id = t.id
     WHERE t.trigger_name = ?
     ORDER BY f.created_at DESC, f.rowid DESC LIMIT ? OFFSET ?
"""

# cron -------------------------------------------------------------------------------
CRON_COLUMNS = (
    "id, workflow_name, instance_name, cron_expression, timezone, enabled, catchup_policy, "
    "params, next_run_at, last_run_at, created_at, updated_at"
)
INSERT_CRON = f"""
    INSERT INTO cron_schedules ({CRON_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT DO NOTHING
"""
SELECT_CRON = f"SELECT {CRON_COLUMNS} FROM cron_schedules WHERE id = ?"
SELECT_CRON_INSTANCE = f"""
    SELECT {CRON_COLUMNS} FROM cron_schedules WHERE workflow_name = ? AND instance_name = ?
"""
UPDATE_CRON_INSTANCE = """
    UPDATE cron_schedules
       SET cron_expression = ?, timezone = ?, params = ?, next_run_at = ?, updated_at = ?
     WHERE id = ?
"""
LIST_CRON = f"""
    SELECT {CRON_COLUMNS} FROM cron_schedules WHERE (? = 0 OR enabled = 1)
     ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?
"""
UPDATE_CRON = """
    UPDATE cron_schedules SET cron_expression = ?, timezone = ?, next_run_at = ?, updated_at = ?
     WHERE id = ?
"""
SET_CRON_ENABLED = "UPDATE cron_schedules SET enabled = ?, updated_at = ? WHERE id = ?"
DELETE_CRON = "DELETE FROM cron_schedules WHERE id = ?"
DELETE_CRON_FIRES = "DELETE FROM schedule_executions WHERE schedule_id = ? AND kind = 'cron'"
DUE_CRON = f"""
    SELECT {CRON_COLUMNS} FROM cron_schedules WHERE enabled = 1 AND next_run_at <= ?
     ORDER BY next_run_at
"""
NEXT_CRON_RUN = "SELECT MIN(next_run_at) FROM cron_schedules WHERE enabled = 1"
ADVANCE_CRON = """
    UPDATE cron_schedules SET next_run_at = ?, last_run_at = ?, updated_at = ?
     WHERE id = ? AND next_run_at = ? AND enabled = 1
"""
INSERT_CRON_FIRE = """
    INSERT INTO schedule_executions
        (id, schedule_id, kind, scheduled_time, claimed_at, completed_at, outcome,
         created_at, updated_at)
    VALUES (?, ?, 'cron', ?, ?, ?, ?, ?, ?)
    ON CONFLICT DO NOTHING
"""
CLOSE_SCHEDULE_FIRE = """
    UPDATE schedule_executions SET completed_at = ?, updated_at = ?, outcome = ?, error = ?
     WHERE id = ?
"""
CRON_HISTORY = f"""
    SELECT {FIRE_COLUMNS} FROM schedule_executions WHERE schedule_id = ? AND kind = 'cron'
     ORDER BY scheduled_time DESC, rowid DESC LIMIT ? OFFSET ?
"""
# A slot skipped by the catch-up policy never was an execution: it is history only.
SCHEDULE_STATS = """
    SELECT COUNT(*),
           SUM(CASE WHEN workflow_execution_id IS NOT NULL THEN 1 ELSE 0 END),
           SUM(CASE WHEN workflow_execution_id IS NULL AND outcome IS NULL AND claimed_at < ?
                    THEN 1 ELSE 0 END)
      FROM schedule_executions
     WHERE claimed_at >= ? AND (outcome IS NULL OR outcome <> 'skipped')
"""
CLOSE_ENDED_CRON_FIRES = """
    UPDATE schedule_executions SET completed_at = ?, updated_at = ?
     WHERE completed_at IS NULL AND kind = 'cron' AND workflow_execution_id IS NOT NULL
       AND NOT EXISTS (
           SELECT 1 FROM workflow_executions e
            WHERE e.id = schedule_executions.workflow_execution_id
              AND e.status IN ('Pending', 'Running'))
"""
ABANDON_LOST_CRON_FIRES = """
    UPDATE schedule_executions SET completed_at = ?, updated_at = ?, outcome = 'abandoned',
           error = 'hand-off lost: no run was started for this slot'
     WHERE completed_at IS NULL AND kind = 'cron' AND workflow_execution_id IS NULL
       AND claimed_at < ? AND (created_at < ? OR attempts >= ?)
"""
SELECT_LOST_CRON_FIRES = f"""
    SELECT {', '.join('f.' + c.strip() for c in FIRE_COLUMNS.split(','))},
           {', '.join('s.' + c.strip() for c in CRON_COLUMNS.split(','))}
      FROM schedule_executions f JOIN cron_schedules s ON f.schedule_id = s.id
     WHERE f.completed_at IS NULL AND f.kind = 'cron' AND f.workflow_execution_id IS NULL
       AND f.claimed_at < ?
"""
COUNT_FIRE_ATTEMPT = """
    UPDATE schedule_executions SET attempts = attempts + 1, claimed_at = ?, updated_at = ?
     WHERE id = ?
"""


# reactors ---------------------------------------------------------------------------
SUBSCRIPTION_COLUMNS = (
    "id, reactor_name, workflow_name, tenant_id, enabled, last_seen_fired_at, "
    "last_seen_firing_id, created_at, updated_at, predicate_expression, predicate_degraded, "
    "predicate_error_count, last_predicate_error, last_predicate_error_at, predicate_error_firing_id"
)
UPSERT_SUBSCRIPTION = """
    INSERT INTO reactor_trigger_subscriptions
        (id, reactor_name, workflow_name, tenant_id, predicate_expression, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (reactor_name, workflow_name, tenant_id) DO UPDATE SET
        predicate_expression = excluded.predicate_expression, updated_at = excluded.updated_at
"""
SELECT_SUBSCRIPTION_ID = """
    SELECT id FROM reactor_trigger_subscriptions
    WHERE reactor_name = ? AND workflow_name = ? AND tenant_id = ?
"""
DELETE_SUBSCRIPTION = """
    DELETE FROM reactor_trigger_subscriptions
    WHERE reactor_name = ? AND workflow_name = ? AND tenant_id = ?
"""
LIST_SUBSCRIPTIONS = f"""
    SELECT {SUBSCRIPTION_COLUMNS} FROM reactor_trigger_subscriptions
    WHERE enabled = 1 AND (? IS NULL OR tenant_id = ?) ORDER BY created_at, id
"""
ANY_SUBSCRIPTION = "SELECT 1 FROM reactor_trigger_subscriptions WHERE enabled = 1 LIMIT 1"
CLAIM_SUBSCRIPTIONS = """
    UPDATE reactor_trigger_subscriptions SET lease_owner = ?, lease_until = ?
    WHERE enabled = 1 AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)
"""
HELD_SUBSCRIPTIONS = f"""
    SELECT {SUBSCRIPTION_COLUMNS} FROM reactor_trigger_subscriptions
    WHERE enabled = 1 AND lease_owner = ? ORDER BY created_at, id
"""
RELEASE_SUBSCRIPTIONS = """
    UPDATE reactor_trigger_subscriptions SET lease_owner = NULL, lease_until = NULL
    WHERE lease_owner = ?
"""
SAVE_SUBSCRIPTION_PROGRESS = """
    UPDATE reactor_trigger_subscriptions SET
        last_seen_fired_at = ?, last_seen_firing_id = ?, predicate_degraded = ?,
        predicate_error_count = ?, last_predicate_error = ?, last_predicate_error_at = ?,
        predicate_error_firing_id = ?, updated_at = ?
    WHERE id = ?
"""
INSERT_FIRING = """
    INSERT INTO reactor_firings (id, tenant_id, reactor_name, payload, fired_at) VALUES (?, ?, ?, ?, ?)
"""
FIRING_COLUMNS = "id, tenant_id, reactor_name, payload, fired_at"
FIRINGS_AFTER = f"""
    SELECT {FIRING_COLUMNS} FROM reactor_firings
    WHERE tenant_id = ? AND reactor_name = ? AND (fired_at > ? OR (fired_at = ? AND id > ?))
    ORDER BY fired_at, id LIMIT ?
"""
FIRINGS_FROM_START = f"""
    SELECT {FIRING_COLUMNS} FROM reactor_firings
    WHERE tenant_id = ? AND reactor_name = ? ORDER BY fired_at, id LIMIT ?
"""
PRUNE_FIRINGS = "DELETE FROM reactor_firings WHERE fired_at < ?"
SAVE_REACTOR_STATE = """
    INSERT INTO reactor_state (tenant_id, reactor_name, state, updated_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (tenant_id, reactor_name) DO UPDATE SET
        state = excluded.state, updated_at = excluded.updated_at
"""
LOAD_REACTOR_STATE = "SELECT state FROM reactor_state WHERE tenant_id = ? AND reactor_name = ?"
# {table} is accumulator_checkpoints or state_accumulator_buffers (chosen in code, never input).
SAVE_ACCUMULATOR_STATE = """
    INSERT INTO {table} (tenant_id, accumulator_name, data, updated_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (tenant_id, accumulator_name) DO UPDATE SET
        data = excluded.data, updated_at = excluded.updated_at
"""
LOAD_ACCUMULATOR_STATE = "SELECT data FROM {table} WHERE tenant_id = ? AND accumulator_name = ?"
ACCUMULATOR_TABLES = {"checkpoint": "accumulator_checkpoints", "window": "state_accumulator_buffers"}
REACTOR_TENANTS = """
    SELECT tenant_id FROM reactor_state
    UNION SELECT tenant_id FROM accumulator_checkpoints
    UNION SELECT tenant_id FROM state_accumulator_buffers
    ORDER BY tenant_id
"""
