"""The rendered definitions validate against the public pipeline-definition JSON schema.

The schema (in ../shared/reference/, not part of this repository) lags behind what the sagemaker SDK v2
emits and SageMaker accepts. `patched_schema` fills exactly those gaps, each where the SDK emits the
construct, and leaves the rest of the schema as strict as it is.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.pipeline_definitions.rendering.conftest import REPO_ROOT

SCHEMA_PATH = REPO_ROOT.parent / "shared" / "reference" / "sagemaker-pipeline-definition.schema.json"
GET = {"$ref": "#/definitions/GetFunction"}
JOIN = {"$ref": "#/definitions/JoinFunction"}
JSON_GET = {"$ref": "#/definitions/JsonGetFunction"}


def patched_schema(schema: dict[str, Any]) -> dict[str, Any]:
    patched = copy.deepcopy(schema)
    defs = patched["definitions"]
    # Std:JsonGet reads a value from a step's property file; the schema does not define it.
    defs["JsonGetFunction"] = {
        "type": "object",
        "properties": {
            "Std:JsonGet": {
                "type": "object",
                "properties": {"PropertyFile": GET, "Path": {"type": "string"}},
                "required": ["PropertyFile", "Path"],
                "additionalProperties": False,
            }
        },
        "required": ["Std:JsonGet"],
        "additionalProperties": False,
    }
    # The schema's Std:Join lists its keywords without a `properties` wrapper, so it rejects every Join.
    defs["JoinFunction"] = {
        "type": "object",
        "properties": {
            "Std:Join": {
                "type": "object",
                "properties": {
                    "On": {"type": "string"},
                    "Values": {"type": "array", "items": {"oneOf": [{"type": "string"}, GET, JSON_GET]}},
                },
                "required": ["On", "Values"],
                "additionalProperties": False,
            }
        },
        "required": ["Std:Join"],
        "additionalProperties": False,
    }
    # The SDK writes the allowed values of a string parameter.
    defs["StringParameter"]["properties"]["EnumValues"] = {"type": "array", "items": {"type": "string"}}
    # The SDK writes ExceptionType as a list of the schema's exception types.
    exception_type = defs["RetryPolicy"]["properties"]["ExceptionType"]
    defs["RetryPolicy"]["properties"]["ExceptionType"] = {"type": "array", "items": exception_type}
    defs["ProcessingStep"]["properties"]["PropertyFiles"] = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {name: {"type": "string"} for name in ("PropertyFileName", "OutputName", "FilePath")},
            "required": ["PropertyFileName", "OutputName", "FilePath"],
            "additionalProperties": False,
        },
    }
    processing = defs["ProcessingArgs"]["properties"]
    input_item = processing["ProcessingInputs"]["items"]
    output_item = processing["ProcessingOutputConfig"]["properties"]["Outputs"]["items"]
    # The SDK writes AppManaged on every input and output.
    for item in (input_item, output_item):
        item["properties"]["AppManaged"] = {"type": "boolean"}
    # Run-scoped output locations are joined from the execution id.
    s3_output = output_item["properties"]["S3Output"]["properties"]
    s3_output["S3Uri"] = {"oneOf": [s3_output["S3Uri"], JOIN]}
    # So is the evaluations folder select and register read all summaries from.
    s3_input = input_item["properties"]["S3Input"]["properties"]
    s3_input["S3Uri"] = {"oneOf": [s3_input["S3Uri"], JOIN]}
    # The fail message quotes the decision's reason.
    fail_arguments = defs["FailStep"]["properties"]["Arguments"]["properties"]
    fail_arguments["ErrorMessage"] = {"oneOf": [fail_arguments["ErrorMessage"], JOIN]}
    # The policy check compares a value read from the decision file.
    defs["BinaryCondition"]["properties"]["LeftValue"]["anyOf"].append(JSON_GET)
    return patched


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    if not SCHEMA_PATH.exists():
        pytest.skip(f"reference schema not present at {SCHEMA_PATH}")
    schema = patched_schema(json.loads(Path(SCHEMA_PATH).read_text()))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_definition_validates(validator: jsonschema.Draft7Validator, definition: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(definition)]
    assert errors == []


def _mutated(definition: dict[str, Any], change: str) -> dict[str, Any]:
    broken = copy.deepcopy(definition)
    preprocess = broken["Steps"][0]
    if change == "unknown step field":
        preprocess["Retries"] = 3
    elif change == "bad step name":
        preprocess["Name"] = "Pre process"
    elif change == "unknown exception type":
        preprocess["RetryPolicies"][0]["ExceptionType"] = ["Step.EVERYTHING"]
    elif change == "join without values":
        preprocess["Arguments"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] = {"Std:Join": {"On": "/"}}
    elif change == "join in the role":
        preprocess["Arguments"]["RoleArn"] = {"Std:Join": {"On": "", "Values": ["arn"]}}
    return broken


@pytest.mark.parametrize(
    "change",
    ["unknown step field", "bad step name", "unknown exception type", "join without values", "join in the role"],
)
def test_the_patch_loosens_nothing_else(
    validator: jsonschema.Draft7Validator, definition: dict[str, Any], change: str
) -> None:
    assert not validator.is_valid(_mutated(definition, change))
