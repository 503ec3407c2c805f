"""Every reference in a rendered definition points at something that exists in it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pipeline_definitions.planning import plan as p
from step_code.contract import files
from tests.pipeline_definitions.rendering.conftest import all_steps

STEP_OUTPUT_RE = re.compile(
    r"^Steps\.([A-Za-z0-9_-]+)\.ProcessingOutputConfig\.Outputs\['([A-Za-z0-9_-]+)'\]\.S3Output\.S3Uri$"
)
PROPERTY_FILE_RE = re.compile(r"^Steps\.([A-Za-z0-9_-]+)\.PropertyFiles\.([A-Za-z0-9_-]+)$")
PARAMETER_RE = re.compile(r"^Parameters\.([A-Za-z0-9_-]+)$")
# The execution variables SageMaker defines.
EXECUTION_VARIABLES = {
    "Execution.PipelineExecutionId",
    "Execution.PipelineExecutionArn",
    "Execution.PipelineName",
    "Execution.PipelineArn",
    "Execution.StartDateTime",
    "Execution.CurrentDateTime",
}


def gets(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if set(node) == {"Get"}:
            yield node["Get"]
            return
        for value in node.values():
            yield from gets(value)
    elif isinstance(node, list):
        for value in node:
            yield from gets(value)


def json_gets(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "Std:JsonGet" in node:
            yield node["Std:JsonGet"]
        for value in node.values():
            yield from json_gets(value)
    elif isinstance(node, list):
        for value in node:
            yield from json_gets(value)


def test_every_get_resolves(definition: dict[str, Any]) -> None:
    steps = {s["Name"]: s for s in all_steps(definition)}
    parameters = {param["Name"] for param in definition["Parameters"]}
    references = list(gets(definition["Steps"]))
    assert references, "a rendered plan always references step outputs and parameters"
    for reference in references:
        if match := STEP_OUTPUT_RE.match(reference):
            step, output = match.groups()
            assert step in steps, reference
            outputs = steps[step]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
            assert output in {o["OutputName"] for o in outputs}, reference
        elif match := PROPERTY_FILE_RE.match(reference):
            step, name = match.groups()
            assert step in steps, reference
            assert name in {f["PropertyFileName"] for f in steps[step].get("PropertyFiles", [])}, reference
        elif match := PARAMETER_RE.match(reference):
            assert match.group(1) in parameters, reference
        else:
            assert reference in EXECUTION_VARIABLES, f"unexpected reference {reference}"


def test_json_gets_read_a_declared_property_file(definition: dict[str, Any]) -> None:
    steps = {s["Name"]: s for s in all_steps(definition)}
    reads = list(json_gets(definition["Steps"]))
    assert [r["Path"] for r in reads] == [files.DECISION_MEETS_POLICY, files.DECISION_REASON]
    for read in reads:
        match = PROPERTY_FILE_RE.match(read["PropertyFile"]["Get"])
        assert match is not None
        step, name = match.groups()
        (declared,) = [f for f in steps[step]["PropertyFiles"] if f["PropertyFileName"] == name]
        assert declared == {
            "PropertyFileName": "Decision",
            "OutputName": files.DECISION,
            "FilePath": files.DECISION_FILE,
        }
        assert declared["OutputName"] in {
            o["OutputName"] for o in steps[step]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
        }


def test_step_names_are_unique_and_depends_on_names_steps(definition: dict[str, Any]) -> None:
    names = [s["Name"] for s in all_steps(definition)]
    assert len(names) == len(set(names))
    for step in all_steps(definition):
        for dependency in step.get("DependsOn", []):
            assert dependency in names and dependency != step["Name"]


def test_parameters(definition: dict[str, Any]) -> None:
    assert definition["Parameters"] == [
        {
            "Name": p.PARAM_PROMPT_CATALOG_URI,
            "Type": "String",
            "DefaultValue": "s3://evalops-dev-artifacts-123456789012/prompt-catalog/",
        },
        {
            "Name": p.PARAM_MODEL_APPROVAL_STATUS,
            "Type": "String",
            "DefaultValue": files.DEFAULT_APPROVAL_STATUS,
            "EnumValues": list(files.APPROVAL_STATUSES),
        },
        {
            "Name": p.PARAM_RESPONSE_CACHE,
            "Type": "String",
            "DefaultValue": files.RESPONSE_CACHE_USE,
            "EnumValues": list(files.RESPONSE_CACHE_MODES),
        },
    ]
    assert "PipelineExperimentConfig" not in definition
