"""The public surface (httpx's model): the names `cloaca` exports are pinned, implementation
modules are private, public objects say they live in `cloaca`."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import cloaca

EXPORTED = [
    "BackoffStrategy", "ComputationGraphBuilder", "Context", "DatabaseAdmin", "DefaultRunner",
    "DefaultRunnerConfig", "RetryCondition", "RetryPolicy", "RetryPolicyBuilder", "TaskDecorator",
    "TaskHandle", "TaskNamespace", "TenantConfig", "TenantCredentials", "TriggerDecorator",
    "TriggerResult", "Workflow", "WorkflowBuilder", "WorkflowContext", "WorkflowParamsDecorator",
    "WorkflowResult", "WorkflowSecretsDecorator", "all_of", "always", "any_of",
    "batch_accumulator", "boundary_schema", "context_value", "node", "none_of",
    "passthrough_accumulator", "polling_accumulator", "reactor", "register_workflow_constructor",
    "state_accumulator", "stream_accumulator", "task", "task_failed", "task_skipped",
    "task_success", "trigger", "var", "var_or", "workflow_params", "workflow_secrets",
]
PUBLIC_PACKAGES = {"dashboard", "testing"}


def test_the_exported_names_are_pinned():
    assert sorted(cloaca.__all__) == sorted(EXPORTED)


def test_a_fresh_import_shows_no_public_looking_name_outside_all():
    code = "import cloaca; print(' '.join(n for n in dir(cloaca) if not n.startswith('_')))"
    names = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True).stdout.split())
    assert names == set(EXPORTED)


def test_implementation_modules_are_private():
    public = {m.name for m in pkgutil.iter_modules(cloaca.__path__) if not m.name.startswith("_")}
    assert public == PUBLIC_PACKAGES


@pytest.mark.parametrize("name", ["task", "trigger", "context", "runner", "engine", "store", "cron"])
def test_no_module_shadows_a_public_name(name):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"cloaca.{name}")


@pytest.mark.parametrize("name", EXPORTED)
def test_public_objects_live_in_cloaca(name):
    assert getattr(cloaca, name).__module__ == "cloaca"
