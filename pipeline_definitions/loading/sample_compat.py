"""What the reference AWS sample's files mean here: its keys, its per-model `register_config`, its SDK defaults file.

`SAMPLE_KEYS` is the table of every key the sample's evaluation configs use and the evalops key it becomes; the
`register_config` translation reads its rows from it, `tests/pipeline_definitions/loading/test_seed_sample.py` walks
every key of the sample's files against it and checks the loaded value, and the README's "Coming from the reference
sample" section lists the same rows.

Two of the sample's spellings need more than a field alias, and are translated here before validation:
- `models[].register_config.model_package_group_name` is the group the sample registers that model in; here it
  becomes `models[].model_package_group_name`, the group the model is registered in when it wins.
- The SDK defaults file (`SchemaVersion`, `SageMaker.PythonSDK...`) the sample keeps beside its configs is not an
  evaluation config; `sdk_defaults_message` recognises it so the CLI says so in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline_definitions.loading.validation import Finding, Loc
from step_code.contract.config import MODEL_PACKAGE_GROUP_NAME_RE, Config

REGISTER_CONFIG = "register_config"

SDK_DEFAULTS_KEYS = frozenset({"SchemaVersion", "SageMaker"})
# The environment setting that names an SDK defaults file (configs/environments.yaml).
SDK_DEFAULTS_SETTING = "sagemaker_defaults"


@dataclass(frozen=True)
class SampleKey:
    """A key of the sample's configs (`[]` for any list item, `*` for any key) and what it is here."""

    sample: str
    effect: str
    # The evalops key when it is not spelled as the sample spells it.
    renamed_to: str | None = None

    @property
    def evalops(self) -> str:
        return self.renamed_to or self.sample


SAMPLE_KEYS: tuple[SampleKey, ...] = (
    SampleKey("pipeline.name", "SageMaker pipeline name, deployed as {prefix}-{env}-{name}"),
    SampleKey("dataset.dataset_name", "dataset name in fmeval's outputs and the report"),
    SampleKey(
        "dataset.input_data_location",
        "s3:// URI as it is, or a file in the prompt catalog folder (--catalog-dir) or beside the config",
    ),
    SampleKey("dataset.dataset_mime_type", "jsonlines or json"),
    SampleKey("dataset.model_input_key", "JMESPath of the prompt in each record"),
    SampleKey("dataset.target_output_key", "JMESPath of the reference answer"),
    SampleKey("models[].name", "step names, S3 keys, report"),
    SampleKey("models[].model_provider", "jumpstart (the default)"),
    SampleKey("models[].model_id", "JumpStart model id of the deploy and finetune steps"),
    SampleKey(
        "models[].model_version",
        "JumpStart version; wildcards (*, 2.*) are resolved by JumpStart and the resolved version recorded",
    ),
    SampleKey(
        "models[].endpoint_name",
        "base of the deployed endpoint's name: {prefix}-{env}-{endpoint_name}-{execution id} (`plan` shows it)",
    ),
    SampleKey("models[].deployment_config.instance_type", "endpoint instance"),
    SampleKey("models[].deployment_config.num_instances", "endpoint instances"),
    SampleKey("models[].evaluation_config.output", "JMESPath of the answer"),
    SampleKey("models[].evaluation_config.content_template", "request body, PROMPT_PLACEHOLDER replaced by the prompt"),
    SampleKey("models[].evaluation_config.inference_parameters.*", "sent as the request's parameters"),
    SampleKey(
        "models[].evaluation_config.custom_attributes.*",
        "SageMaker CustomAttributes header (accept_eula=true); accept_eula also accepts the EULA when deploying "
        "and training",
    ),
    SampleKey(
        "models[].evaluation_config.prompt_template", "fmeval prompt template; $feature is rewritten to $model_input"
    ),
    SampleKey("models[].finetuning", "JumpStart fine-tuning before deployment"),
    SampleKey(
        "models[].finetuning_config", "the sample's other spelling of finetuning", renamed_to="models[].finetuning"
    ),
    SampleKey(
        "models[].finetuning.train_data_path",
        "training channel: s3:// as it is, or a file or folder of the uploaded prompt catalog (a folder keeps its "
        "template.json beside the JSON Lines file, as JumpStart expects)",
    ),
    SampleKey("models[].finetuning.validation_data_path", "validation channel, located like train_data_path"),
    SampleKey("models[].finetuning.parameters.instance_type", "training job instance"),
    SampleKey("models[].finetuning.parameters.num_instances", "training job instances"),
    SampleKey(
        "models[].finetuning.parameters.*",
        "JumpStart hyperparameter (epoch, max_input_length, instruction_tuned, chat_dataset, ...), sent as a string",
    ),
    SampleKey(
        "models[].register_config.model_package_group_name",
        "the model package group this model is registered in when it wins; the Registry stack creates it and the "
        "execution role may register in it",
        renamed_to="models[].model_package_group_name",
    ),
    SampleKey("models[].cleanup_endpoint", "delete the endpoint after its evaluation"),
    SampleKey(
        "model_registry.model_package_group_name",
        "group of the winner (optional: without model_registry the group is named after pipeline.name)",
    ),
    SampleKey("model_registry.model_package_group_description", "description of that group"),
    SampleKey("algorithms[].algorithm", "fmeval algorithm"),
    SampleKey("algorithms[].module", "checked against the algorithm's fmeval module"),
    SampleKey("algorithms[].config", "checked against the algorithm's fmeval config class"),
    SampleKey("algorithms[].*", "field of the fmeval config class (target_output_delimiter)"),
)

_MODEL = "models[]."
# The keys of the sample's `register_config` and the ModelConfig field each becomes, as the table says.
REGISTER_CONFIG_FIELDS = {
    row.sample.removeprefix(f"{_MODEL}{REGISTER_CONFIG}."): row.evalops.removeprefix(_MODEL)
    for row in SAMPLE_KEYS
    if row.sample.startswith(f"{_MODEL}{REGISTER_CONFIG}.")
}


def translate_register_config(data: dict[str, Any]) -> tuple[dict[str, Any], list[Finding]]:
    """The raw config with each model's `register_config` moved onto the model's own fields."""
    models = data.get("models")
    if not isinstance(models, list) or not any(isinstance(m, dict) and REGISTER_CONFIG in m for m in models):
        return data, []
    findings: list[Finding] = []
    translated: list[Any] = []
    for index, model in enumerate(models):
        if isinstance(model, dict) and REGISTER_CONFIG in model:
            model, found = _moved_register_config(dict(model), ("models", index, REGISTER_CONFIG))
            findings += found
        translated.append(model)
    return {**data, "models": translated}, findings


def _moved_register_config(model: dict[str, Any], loc: Loc) -> tuple[dict[str, Any], list[Finding]]:
    section = model.pop(REGISTER_CONFIG)
    if section is None:
        return model, []
    expected = ", ".join(REGISTER_CONFIG_FIELDS)
    if not isinstance(section, dict):
        return model, [Finding(loc, f"expected a mapping of {expected}, got {type(section).__name__}")]
    findings: list[Finding] = []
    for key, value in section.items():
        field = REGISTER_CONFIG_FIELDS.get(str(key))
        if field is None:
            findings.append(Finding((*loc, str(key)), f"unknown key {key!r} (expected one of: {expected})"))
        elif not isinstance(value, str) or not MODEL_PACKAGE_GROUP_NAME_RE.match(value):
            findings.append(
                Finding(
                    (*loc, key), f"{value!r} is not a valid model package group name (1-63 letters, digits, hyphens)"
                )
            )
        elif model.get(field) not in (None, value):
            findings.append(
                Finding(
                    (*loc, key),
                    f"{value!r} differs from the model's {field} {model[field]!r}; give the group once",
                )
            )
        else:
            model[field] = value
    return model, findings


def sdk_defaults_message(data: dict[str, Any]) -> str | None:
    """One line saying what an SDK defaults file is and how to use it, or None for any other file."""
    if not set(data) >= SDK_DEFAULTS_KEYS or set(data) & set(Config.model_fields):
        return None
    sections = _leaf_sections(data.get("SageMaker"), "SageMaker")
    sets = f" (sets {', '.join(sections)})" if sections else ""
    return (
        f"a SageMaker Python SDK defaults file, SchemaVersion {data['SchemaVersion']}{sets}, not an evaluation "
        f"config: name it in configs/environments.yaml as `{SDK_DEFAULTS_SETTING}: <path>` for the environment whose "
        "jobs should use its settings, and validate the evaluation configs beside it instead"
    )


def _leaf_sections(node: Any, path: str) -> list[str]:
    """`SageMaker.PythonSDK.Modules.RemoteFunction` for the sample's file: the mappings holding settings."""
    if not isinstance(node, dict):
        return []
    children = [(key, value) for key, value in node.items() if isinstance(value, dict)]
    if len(children) < len(node) or not children:
        return [path]
    return [section for key, value in children for section in _leaf_sections(value, f"{path}.{key}")]
