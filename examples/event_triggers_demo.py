import cloaca
from datetime import datetime

# =============================================================================
# Callbacks for monitoring
# =============================================================================

def on_task_success(task_id, context):
    """Log successful task completion."""
    print(f"  [SUCCESS] Task '{task_id}' completed")

def on_task_failure(task_id, error, context):
    """Alert on task failure."""
    print(f"  [FAILURE] Task '{task_id}' failed: {error}")

# =============================================================================
# Workflow with monitored tasks
# =============================================================================

with cloaca.WorkflowBuilder("file_processor") as builder:
    builder.description("Process incoming files with monitoring")

    @cloaca.task(
        id="validate_file",
        on_success=on_task_success,
        on_failure=on_task_failure
    )
    def validate_file(context):
        """Validate an incoming file."""
        filename = context.get("filename", "unknown")
        print(f"  Validating file: {filename}")
        context.set("validated", True)
        return context

    @cloaca.task(
        id="process_file",
        dependencies=["validate_file"],
        on_success=on_task_success,
        on_failure=on_task_failure
    )
    def process_file(context):
        """Process the validated file."""
        filename = context.get("filename", "unknown")
        print(f"  Processing file: {filename}")
        context.set("processed_at", datetime.now().isoformat())
        return context

# =============================================================================
# Trigger to watch for files
# =============================================================================

file_counter = 0  # Simulated state

@cloaca.trigger(
    workflow="file_processor",
    name="file_watcher",
    poll_interval="2s",
    allow_concurrent=False
)
def file_watcher():
    """Poll for new files."""
    global file_counter
    file_counter += 1

    # Simulate finding a new file every 5th poll
    if file_counter % 5 == 0:
        filename = f"data_{datetime.now().strftime('%H%M%S')}.csv"
        print(f"  [TRIGGER] Found new file: {filename}")
        ctx = cloaca.Context({"filename": filename})
        return cloaca.TriggerResult.fire(ctx)

    return cloaca.TriggerResult.skip()

# =============================================================================
# Run demonstration
# =============================================================================

def main():
    print("Event Triggers and Task Callbacks Demo")
    print("=" * 50)

    runner = cloaca.DefaultRunner(":memory:")

    # Execute workflow manually to demonstrate callbacks
    print("\nManual execution with callbacks:")
    print("-" * 40)

    context = cloaca.Context({"filename": "report_2024.csv"})
    result = runner.execute("file_processor", context)

    print("-" * 40)
    print(f"Workflow status: {result.status}")

    # Demonstrate trigger polling
    print("\nSimulating trigger polls:")
    print("-" * 40)

    for i in range(7):
        result = file_watcher()
        if result.is_fire_result():
            print(f"  Poll {i+1}: FIRE - workflow will execute")
        else:
            print(f"  Poll {i+1}: SKIP - waiting...")

    runner.shutdown()
    print("\nDemo complete!")

if __name__ == "__main__":
    main()
