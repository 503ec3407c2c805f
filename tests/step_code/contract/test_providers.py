"""The provider table is complete: every provider has an entry, and every entry names what exists."""

from __future__ import annotations

import ast
import typing
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from step_code.contract.config import ModelConfig
from step_code.contract.providers import PROVIDERS, Invocation, ModelProvider, ProviderSpec
from step_code.runners import factory


def _invocations_the_factory_serves() -> set[str]:
    """The invocations `build_runner` compares against; the last (recorded) is its fallback."""
    tree = ast.parse(Path(factory.__file__).read_text(encoding="utf-8"))
    served = {
        node.comparators[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and isinstance(node.left, ast.Name)
        and node.left.id == "invocation"
        and isinstance(node.comparators[0], ast.Constant)
    }
    return served | {"recorded"}


def test_every_provider_has_an_entry() -> None:
    assert set(PROVIDERS) == set(typing.get_args(ModelProvider))


def test_every_field_of_an_entry_is_required() -> None:
    assert all(f.default is MISSING and f.default_factory is MISSING for f in fields(ProviderSpec))


def test_every_invocation_has_a_runner() -> None:
    assert _invocations_the_factory_serves() == set(typing.get_args(Invocation))


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_an_entry_is_consistent(provider: ModelProvider) -> None:
    spec = PROVIDERS[provider]
    assert {r.field for r in spec.requires} <= set(ModelConfig.model_fields), provider
    # A provider that deploys needs a deployment_config; one that finetunes must also deploy what it trained.
    assert (spec.deploys is not None) == any(r.field == "deployment_config" for r in spec.requires)
    assert not spec.finetunable or spec.deploys is not None
    assert not (spec.deploys and spec.existing_endpoint)
    assert spec.calls_model or spec.pricing == "none"
