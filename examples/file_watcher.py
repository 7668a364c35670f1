"""The file-watcher example of tutorial 07 (Event Triggers), runnable as shipped.

The trigger and the workflow are the tutorial's code; the only changes are that the inbox is
a temporary directory this script creates (instead of "/path/to/inbox") and a `main()` that
drops three files into it, runs a DefaultRunner until the trigger has fired once per file
(about 6 s: one file per 2 s poll), prints what happened and shuts down.

    python examples/file_watcher.py
"""

import cloaca
import os
import shutil
import tempfile
import time
from datetime import datetime

# The directory the trigger watches (the tutorial's "/path/to/inbox").
INBOX_DIR = tempfile.mkdtemp(prefix="cloaca-inbox-")

# Track processed files to avoid duplicates
processed_files = set()

@cloaca.trigger(
    workflow="file_processor",
    name="file_watcher",
    poll_interval="2s",
    allow_concurrent=False
)
def file_watcher():
    """Watch for new files in inbox directory."""
    inbox_dir = INBOX_DIR

    for filename in sorted(os.listdir(inbox_dir)):
        filepath = os.path.join(inbox_dir, filename)

        # Skip already processed files
        if filepath in processed_files:
            continue

        # Skip non-files
        if not os.path.isfile(filepath):
            continue

        # Found a new file - fire the workflow
        processed_files.add(filepath)
        ctx = cloaca.Context({
            "filepath": filepath,
            "filename": filename,
            "detected_at": datetime.now().isoformat()
        })
        return cloaca.TriggerResult.fire(ctx)

    # No new files found
    return cloaca.TriggerResult.skip()

# Define the workflow to process files
with cloaca.WorkflowBuilder("file_processor") as builder:
    builder.description("Process incoming files")

    @cloaca.task(id="process_file")
    def process_file(context):
        filepath = context.get("filepath")
        filename = context.get("filename")

        print(f"Processing file: {filename}")
        # Process the file...
        with open(filepath) as f:
            context.set("line_count", sum(1 for _ in f))

        context.set("processed", True)
        return context


# =============================================================================
# Run it: three files in the inbox, a runner polling the trigger, a bounded wait
# =============================================================================

FILES = {"orders_001.csv": 3, "orders_002.csv": 5, "orders_003.csv": 2}
DEADLINE_SECONDS = 15.0


def main():
    for name, rows in FILES.items():
        with open(os.path.join(INBOX_DIR, name), "w") as f:
            f.write("".join(f"row-{i}\n" for i in range(rows)))
    print(f"Inbox: {INBOX_DIR} ({len(FILES)} files)")

    runner = cloaca.DefaultRunner(":memory:")
    try:
        schedule = runner.get_trigger_schedule("file_watcher")
        print(f"Watching with trigger '{schedule['trigger_name']}' -> '{schedule['workflow_name']}' "
              f"every {schedule['poll_interval_ms']}ms")

        # The trigger fires once per poll (one new file each time); wait for every run to end.
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            done = [e for e in runner.list_executions(workflow_name="file_processor")
                    if e["status"] in ("Completed", "Failed")]
            if len(done) >= len(FILES):
                break
            time.sleep(0.1)

        print("\nTrigger history (newest first):")
        for fire in runner.get_trigger_execution_history("file_watcher"):
            result = runner.get_execution(fire["workflow_execution_id"])
            context = result.final_context
            print(f"  fired {context.get('filename')} (context {fire['context_hash']}): "
                  f"{result.status}, {context.get('line_count')} lines, "
                  f"trigger_name={context.get('trigger_name')}")
    finally:
        runner.shutdown()
        shutil.rmtree(INBOX_DIR, ignore_errors=True)
    print("\nFile watcher demo complete!")


if __name__ == "__main__":
    main()
