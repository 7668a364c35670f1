"""Declaration-only decorators (SPEC §10): pass-through at run time, no public constructors."""

import pytest

import cloaca


def test_workflow_params_returns_the_function_unchanged():
    def fn(ctx):
        return ctx

    decorator = cloaca.workflow_params(region=str, limit=int)
    assert isinstance(decorator, cloaca.WorkflowParamsDecorator)
    assert decorator(fn) is fn
    assert decorator.declaration == {"region": str, "limit": int}


def test_workflow_secrets_returns_the_function_unchanged_and_checks_names():
    def fn(ctx):
        return ctx

    decorator = cloaca.workflow_secrets("db_password", "api_key")
    assert isinstance(decorator, cloaca.WorkflowSecretsDecorator)
    assert decorator(fn) is fn
    assert decorator.declaration == ("db_password", "api_key")
    with pytest.raises(TypeError, match="secret names"):
        cloaca.workflow_secrets(42)


def test_boundary_schema_is_a_pass_through():
    class Boundary:
        pass

    assert cloaca.boundary_schema(price=float)(Boundary) is Boundary


@pytest.mark.parametrize("cls", [cloaca.WorkflowParamsDecorator, cloaca.WorkflowSecretsDecorator])
def test_decorator_classes_have_no_public_constructor(cls):
    with pytest.raises(TypeError):
        cls()
