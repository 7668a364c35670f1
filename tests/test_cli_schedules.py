"""`cloaca triggers ...` and `cloaca cron ...`, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest

from cli_support import APP, BACKENDS, as_json, cloaca, create_database, database_url, ok, one_line_error
from support import poll_until

TRIGGER_KEYS = {"id", "trigger_name", "workflow_name", "poll_interval_ms", "allow_concurrent",
                "enabled", "last_poll_at", "created_at", "updated_at"}
CRON_KEYS = {"id", "workflow_name", "cron_expression", "timezone", "enabled", "catchup_policy",
             "next_run_at", "last_run_at", "created_at", "updated_at"}


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from database_url(request.param, tmp_path)


def test_triggers_list_enable_disable_and_history(db: str) -> None:
    create_database(db)
    # A runner with the app loaded records its triggers' schedules.
    triggers = as_json(cloaca("--db", db, "--app", APP, "--json", "triggers", "list"))
    assert {t["trigger_name"] for t in triggers} == {"inbox", "slow_inbox", "fan_inbox"}
    assert all(set(t) == TRIGGER_KEYS for t in triggers)
    inbox = next(t for t in triggers if t["trigger_name"] == "inbox")
    assert (inbox["workflow_name"], inbox["poll_interval_ms"], inbox["enabled"]) == ("cli_greet", 100, True)

    disabled = as_json(cloaca("--db", db, "--json", "triggers", "disable", "inbox"))
    assert (disabled["trigger_name"], disabled["enabled"]) == ("inbox", False)
    enabled_only = as_json(cloaca("--db", db, "--json", "triggers", "list", "--enabled-only"))
    assert {t["trigger_name"] for t in enabled_only} == {"slow_inbox", "fan_inbox"}

    human = ok(cloaca("--db", db, "triggers", "list")).stdout.splitlines()
    assert human[0].split() == ["TRIGGER", "WORKFLOW", "EVERY", "CONCURRENT", "ENABLED", "LAST", "POLL"]
    rows = {line.split()[0]: line.split() for line in human[1:]}
    assert rows["inbox"][1:5] == ["cli_greet", "100ms", "no", "no"]
    assert rows["slow_inbox"][1:5] == ["cli_slow", "100ms", "no", "yes"]

    assert ok(cloaca("--db", db, "triggers", "enable", "inbox")).stdout.strip() == "Trigger 'inbox' enabled."
    assert len(as_json(cloaca("--db", db, "--json", "triggers", "list", "--enabled-only"))) == 3

    assert as_json(cloaca("--db", db, "--json", "triggers", "history", "inbox")) == []
    assert "has not fired" in ok(cloaca("--db", db, "triggers", "history", "inbox")).stdout
    for command in ("enable", "disable", "history"):
        one_line_error(cloaca("--db", db, "triggers", command, "nope"), 1, "no trigger named 'nope'")


def test_cron_add_list_enable_disable_history_delete(db: str) -> None:
    schedule_id = ok(cloaca("--db", db, "cron", "add", "cli_greet", "0 9 * * 1-5",
                            "--timezone", "Europe/Paris")).stdout.strip()
    # Every second: each command below starts once its first slot is due, and none of them
    # may fire it (firing is the workers' job; a scheduler fires what is due as it starts).
    added = as_json(cloaca("--db", db, "--json", "cron", "add", "cli_fails", "* * * * * *",
                           "--catchup", "run_all"))
    assert set(added) == CRON_KEYS
    first_slot = datetime.fromisoformat(added["next_run_at"])
    poll_until(lambda: datetime.now(timezone.utc) > first_slot, "the first slot to be due", timeout=10)
    assert (added["workflow_name"], added["timezone"], added["catchup_policy"]) == ("cli_fails", "UTC", "run_all")

    listed = as_json(cloaca("--db", db, "--json", "cron", "list"))
    assert [s["id"] for s in listed] == [added["id"], schedule_id]  # newest first
    paris = listed[1]
    assert set(paris) == CRON_KEYS
    assert (paris["cron_expression"], paris["timezone"], paris["enabled"]) == ("0 9 * * 1-5", "Europe/Paris", True)

    disabled = as_json(cloaca("--db", db, "--json", "cron", "disable", schedule_id))
    assert disabled["enabled"] is False
    assert [s["id"] for s in as_json(cloaca("--db", db, "--json", "cron", "list", "--enabled-only"))] == [added["id"]]
    human = ok(cloaca("--db", db, "cron", "list")).stdout.splitlines()
    assert human[0].split()[:5] == ["ID", "WORKFLOW", "EXPRESSION", "TIMEZONE", "ENABLED"]
    assert any(line.startswith(schedule_id) and "0 9 * * 1-5" in line and " no " in line for line in human)

    assert ok(cloaca("--db", db, "cron", "enable", schedule_id)).stdout.strip() == f"Cron schedule {schedule_id} enabled."
    assert as_json(cloaca("--db", db, "--json", "cron", "history", schedule_id)) == []
    assert as_json(cloaca("--db", db, "--json", "cron", "history", added["id"])) == []

    assert as_json(cloaca("--db", db, "--json", "cron", "delete", added["id"])) == {"id": added["id"], "deleted": True}
    for command in ("enable", "disable", "delete", "history"):
        one_line_error(cloaca("--db", db, "cron", command, added["id"]), 1, "no cron schedule", added["id"])
    one_line_error(cloaca("--db", db, "cron", "enable", "not-a-uuid"), 1, "not-a-uuid")

    # A bad expression or time zone is a usage error, and adds nothing.
    one_line_error(cloaca("--db", db, "cron", "add", "cli_greet", "61 * * * *"), 2, "61 * * * *")
    one_line_error(cloaca("--db", db, "cron", "add", "cli_greet", "* * * * *", "--timezone", "Mars/Olympus"),
                   2, "Mars/Olympus")
    assert [s["id"] for s in as_json(cloaca("--db", db, "--json", "cron", "list"))] == [schedule_id]
