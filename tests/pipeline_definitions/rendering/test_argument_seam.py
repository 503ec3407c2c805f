"""The seam between the renderer and the step code: every rendered processing step's ContainerArguments
parse with the parser of the module its entrypoint runs, and every container path they name is one of
the job's ProcessingInputs or ProcessingOutputs (and every input and output is named)."""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

GOLDEN = Path(__file__).parent / "golden"
INPUT_ROOT = "/opt/ml/processing/input/"
OUTPUT_ROOT = "/opt/ml/processing/output/"
# The bundle itself: the entrypoint imports it, no argument names it.
CODE_INPUT = "code"


class Parsed(BaseException):
    """Raised from parse_args so that a step's main stops right after parsing (run_step catches Exception)."""

    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__()
        self.namespace = namespace


def processing_steps() -> Iterator[tuple[str, tuple[dict[str, Any], dict[str, Any]]]]:
    for golden in sorted(GOLDEN.glob("*.json")):
        definition = json.loads(golden.read_text(encoding="utf-8"))
        defaults = {parameter["Name"]: parameter.get("DefaultValue") for parameter in definition["Parameters"]}
        for step in definition["Steps"]:
            if step["Type"] == "Processing":
                yield f"{golden.stem}:{step['Name']}", (step, defaults)


STEPS = dict(processing_steps())


def concrete(argument: Any, defaults: dict[str, Any]) -> str:
    """A pipeline expression as the string SageMaker passes: a parameter's default, an execution id, a join."""
    if isinstance(argument, str):
        return argument
    if "Std:Join" in argument:
        join = argument["Std:Join"]
        return str(join["On"]).join(concrete(value, defaults) for value in join["Values"])
    reference = argument["Get"]
    if reference.startswith("Parameters."):
        return str(defaults[reference.removeprefix("Parameters.")])
    assert reference == "Execution.PipelineExecutionId", reference
    return "exec-1"


def parse_with_module(module_name: str, argv: Sequence[str]) -> argparse.Namespace:
    module = importlib.import_module(module_name)
    real_parse = argparse.ArgumentParser.parse_args

    def parse(self: argparse.ArgumentParser, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        raise Parsed(real_parse(self, args, namespace))

    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse):
        try:
            module.main(list(argv))
        except Parsed as parsed:
            return parsed.namespace
    raise AssertionError(f"{module_name}.main returned without parsing its arguments")


def test_the_goldens_hold_every_step_kind() -> None:
    modules = {step["Arguments"]["AppSpecification"]["ContainerEntrypoint"][-1] for step, _ in STEPS.values()}
    assert {
        "step_code.preprocess",
        "step_code.evaluate_step",
        "step_code.evaluate_shards",
        "step_code.merge_shards",
    } <= modules
    assert len(modules) >= 9


@pytest.mark.parametrize("name", sorted(STEPS))
def test_container_arguments_parse_and_name_exactly_the_jobs_inputs_and_outputs(name: str) -> None:
    step, defaults = STEPS[name]
    arguments = step["Arguments"]
    entrypoint = arguments["AppSpecification"]["ContainerEntrypoint"]
    assert entrypoint[:2] == ["python3", "-m"]
    argv = [concrete(argument, defaults) for argument in arguments["AppSpecification"]["ContainerArguments"]]

    try:
        parse_with_module(entrypoint[2], argv)
    except SystemExit as exit_:
        pytest.fail(f"{name}: {entrypoint[2]} refuses its rendered arguments {argv} (exit {exit_.code})")

    inputs = {
        item["InputName"]: item["S3Input"]["LocalPath"].rstrip("/") + "/" for item in arguments["ProcessingInputs"]
    }
    outputs = {
        item["OutputName"]: item["S3Output"]["LocalPath"].rstrip("/")
        for item in arguments["ProcessingOutputConfig"]["Outputs"]
    }
    paths = [value for value in argv if value.startswith("/opt/ml/")]
    for path in paths:
        if path.startswith(INPUT_ROOT):
            assert any(path.rstrip("/") + "/" == local or path.startswith(local) for local in inputs.values()), (
                f"{name}: {path} is no ProcessingInput ({sorted(inputs.values())})"
            )
        else:
            assert path.startswith(OUTPUT_ROOT) and path.rstrip("/") in outputs.values(), (
                f"{name}: {path} is no ProcessingOutput ({sorted(outputs.values())})"
            )
    for input_name, local in inputs.items():
        if input_name != CODE_INPUT:
            assert any(path.startswith(local) or path + "/" == local for path in paths), (
                f"{name}: input {input_name} ({local}) is downloaded but no argument names it"
            )
    for output_name, local in outputs.items():
        assert local in {path.rstrip("/") for path in paths}, f"{name}: output {output_name} ({local}) is never written"
