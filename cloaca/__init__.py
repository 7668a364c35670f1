"""cloaca: an asyncio-native, embeddable workflow engine (the Cloacina `cloaca` Python API)."""

import logging as _logging

_logging.getLogger("cloaca").addHandler(_logging.NullHandler())

from ._graphs import ComputationGraphBuilder, node
from ._reactors import (
    batch_accumulator,
    passthrough_accumulator,
    polling_accumulator,
    reactor,
    state_accumulator,
    stream_accumulator,
)
from .admin import DatabaseAdmin, TenantConfig, TenantCredentials
from .config import DefaultRunnerConfig
from .context import Context
from .declarations import (
    WorkflowParamsDecorator,
    WorkflowSecretsDecorator,
    boundary_schema,
    workflow_params,
    workflow_secrets,
)
from .namespace import TaskNamespace, WorkflowContext
from .result import WorkflowResult
from .retry import BackoffStrategy, RetryCondition, RetryPolicy, RetryPolicyBuilder
from .rules import all_of, always, any_of, context_value, none_of, task_failed, task_skipped, task_success
from .runner import DefaultRunner, _shutdown_all_runners
from .task import TaskDecorator, TaskHandle, task
from .trigger import TriggerDecorator, TriggerResult, trigger
from .vars import var, var_or
from .workflow import Workflow, WorkflowBuilder, register_workflow_constructor

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
