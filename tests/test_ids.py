"""Run and fire ids are time-ordered UUIDs (version 7)."""

from __future__ import annotations

import time
import uuid

from cloaca._ids import time_ordered_id


def test_ids_are_version_7_uuids_carrying_the_time_in_milliseconds():
    before = time.time_ns() // 1_000_000
    value = uuid.UUID(time_ordered_id())
    after = time.time_ns() // 1_000_000
    assert value.version == 7 and value.variant == uuid.RFC_4122
    assert before <= value.int >> 80 <= after


def test_ids_made_later_sort_later_and_ids_do_not_repeat():
    first = [time_ordered_id() for _ in range(1000)]
    time.sleep(0.002)
    second = [time_ordered_id() for _ in range(1000)]
    assert max(first) < min(second)
    assert len(set(first + second)) == 2000


def test_a_run_id_is_such_an_id(runner, wf_name):
    import cloaca
    from cloaca import Context

    name = wf_name()
    with cloaca.WorkflowBuilder(name):

        @cloaca.task(id="only")
        def only(context: Context) -> Context:
            return context

    assert uuid.UUID(runner.execute(name, Context({})).execution_id).version == 7


def test_a_forked_child_does_not_repeat_its_parents_ids():
    import os

    time_ordered_id()  # the parent holds unread random bits now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, "".join(time_ordered_id() for _ in range(5)).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 4096).decode()
    os.close(read)
    os.close(write)
    mine = [time_ordered_id() for _ in range(5)]
    child_ids = [child[i:i + 36] for i in range(0, len(child), 36)]
    assert len(child_ids) == 5
    assert not {i[-12:] for i in child_ids} & {i[-12:] for i in mine}


def test_the_text_is_the_standard_uuid_form():
    text = time_ordered_id()
    assert str(uuid.UUID(text)) == text


def test_ids_made_in_many_threads_at_once_do_not_repeat():
    import sys
    import threading

    made: list[list[str]] = []

    def make() -> None:
        made.append([time_ordered_id() for _ in range(5000)])

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can
    try:
        threads = [threading.Thread(target=make) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    ids = [i for batch in made for i in batch]
    assert len(ids) == 40_000 and len(set(ids)) == 40_000
