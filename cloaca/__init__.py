"""cloaca: an asyncio-native, embeddable workflow engine (the Cloacina `cloaca` Python API).

The public names are re-exported here; every implementation module is private (`_name`).
`cloaca.testing` (test helpers) and `cloaca.dashboard` (the web UI) are public packages.
"""

import logging as _logging

from ._admin import DatabaseAdmin, TenantConfig, TenantCredentials
from ._config import DefaultRunnerConfig
from ._context import Context
from ._declarations import (
    WorkflowParamsDecorator,
    WorkflowSecretsDecorator,
    boundary_schema,
    workflow_params,
    workflow_secrets,
)
from ._declare import (
    TaskDecorator,
    TriggerDecorator,
    WorkflowBuilder,
    register_workflow_constructor,
    task,
    trigger,
)
from ._graphs import ComputationGraphBuilder, node
from ._namespace import TaskNamespace, WorkflowContext
from ._reactors import (
    batch_accumulator,
    passthrough_accumulator,
    polling_accumulator,
    reactor,
    state_accumulator,
    stream_accumulator,
)
from ._result import WorkflowResult
from ._retry import BackoffStrategy, RetryCondition, RetryPolicy, RetryPolicyBuilder
from ._rules import (
    all_of,
    always,
    any_of,
    context_value,
    none_of,
    task_failed,
    task_skipped,
    task_success,
)
from ._runner import DefaultRunner
from ._task import TaskHandle
from ._triggers.definition import TriggerResult
from ._vars import var, var_or
from ._workflow import Workflow

__all__ = [
    "BackoffStrategy",
    "ComputationGraphBuilder",
    "Context",
    "DatabaseAdmin",
    "DefaultRunner",
    "DefaultRunnerConfig",
    "RetryCondition",
    "RetryPolicy",
    "RetryPolicyBuilder",
    "TaskDecorator",
    "TaskHandle",
    "TaskNamespace",
    "TenantConfig",
    "TenantCredentials",
    "TriggerDecorator",
    "TriggerResult",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowContext",
    "WorkflowParamsDecorator",
    "WorkflowResult",
    "WorkflowSecretsDecorator",
    "all_of",
    "always",
    "any_of",
    "batch_accumulator",
    "boundary_schema",
    "context_value",
    "node",
    "none_of",
    "passthrough_accumulator",
    "polling_accumulator",
    "reactor",
    "register_workflow_constructor",
    "state_accumulator",
    "stream_accumulator",
    "task",
    "task_failed",
    "task_skipped",
    "task_success",
    "trigger",
    "var",
    "var_or",
    "workflow_params",
    "workflow_secrets",
]

_logging.getLogger("cloaca").addHandler(_logging.NullHandler())

# Public objects say where users find them (`cloaca.Context`, not `cloaca._context.Context`).
for _name in __all__:
    globals()[_name].__module__ = "cloaca"
del _name
