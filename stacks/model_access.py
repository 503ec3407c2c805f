"""AWS-owned resources the configured models need, so the execution role can name them instead of `*`.

Pure functions over the config and the target region; nothing here creates constructs or calls AWS.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from step_code.contract.config import Config
from step_code.contract.locations import is_s3

# JumpStart reads its model manifest, scripts and weights from these AWS-owned buckets; gated models
# (Llama, for example) come from the private one.
JUMPSTART_BUCKET_TEMPLATES = ("jumpstart-cache-prod-{region}", "jumpstart-private-cache-prod-{region}")

# Image families JumpStart deploys and fine-tunes text models with (TGI, TEI, DJL/LMI, PyTorch).
DLC_IMAGE_FAMILIES = ("huggingface-llm", "huggingface-tei", "djl-lmi", "djl-deepspeed", "huggingface", "pytorch")

# Cross-region inference profile ids are `<geography>.<provider>.<model>`.
INFERENCE_PROFILE_GEOGRAPHIES = frozenset({"us", "us-gov", "eu", "apac", "jp", "au", "ca", "global"})


class UnknownRegionError(ValueError):
    """The installed sagemaker SDK lists no deep learning container registry for the region."""


def jumpstart_buckets(region: str) -> tuple[str, ...]:
    return tuple(template.format(region=region) for template in JUMPSTART_BUCKET_TEMPLATES)


def _image_uri_config_dir() -> Path:
    # find_spec locates the installed SDK without importing it: synth stays free of its import cost.
    spec = importlib.util.find_spec("sagemaker")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the sagemaker SDK is not installed; it lists the deep learning container registries")
    return Path(next(iter(spec.submodule_search_locations))) / "image_uri_config"


def _registries(node: Any) -> Iterator[dict[str, str]]:
    if isinstance(node, dict):
        registries = node.get("registries")
        if isinstance(registries, dict):
            yield registries
        for value in node.values():
            yield from _registries(value)


@cache
def dlc_registry_accounts(region: str) -> tuple[str, ...]:
    """AWS accounts whose ECR registries serve the deep learning containers of these families in `region`."""
    config_dir = _image_uri_config_dir()
    accounts: set[str] = set()
    for family in DLC_IMAGE_FAMILIES:
        table = json.loads((config_dir / f"{family}.json").read_text(encoding="utf-8"))
        accounts.update(registries[region] for registries in _registries(table) if region in registries)
    if not accounts:
        raise UnknownRegionError(f"no SageMaker deep learning container registry is known for region {region!r}")
    return tuple(sorted(accounts))


def bedrock_model_arns(model_id: str, *, partition: str, region: str, account: str) -> tuple[str, ...]:
    """What `bedrock:InvokeModel` must allow for one configured model id."""
    if model_id.startswith("arn:"):
        return (model_id,)
    geography, _, base_model_id = model_id.partition(".")
    if geography in INFERENCE_PROFILE_GEOGRAPHIES and "." in base_model_id:
        # A cross-region profile routes each request to the base model in any region of its geography.
        return (
            f"arn:{partition}:bedrock:{region}:{account}:inference-profile/{model_id}",
            f"arn:{partition}:bedrock:*::foundation-model/{base_model_id}",
        )
    return (f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}",)


def bedrock_model_ids(config: Config) -> tuple[str, ...]:
    return tuple(
        dict.fromkeys(m.model_id for m in config.models if m.provider.access == "bedrock-invoke" and m.model_id)
    )


def existing_endpoint_names(config: Config) -> tuple[str, ...]:
    """Endpoints the platform invokes but did not create (`model_provider: endpoint`)."""
    return tuple(
        dict.fromkeys(
            m.endpoint_name for m in config.models if m.provider.access == "endpoint-invoke" and m.endpoint_name
        )
    )


def deploys_jumpstart(config: Config) -> bool:
    return any(m.provider.access == "jumpstart-artifacts" for m in config.models)


def redeploys_champion(config: Config) -> bool:
    """With selection.baseline approved, the champion step may redeploy the approved package when its stored
    outputs do not fit the run: a deep learning container with JumpStart or fine-tuned weights, whichever
    model won an earlier run (step_code/champion_answering.py)."""
    return config.selection.baseline == "approved"


def deploys_containers(config: Config) -> bool:
    """Whether any step creates a SageMaker model or training job, which pulls a deep learning container."""
    return any(m.deploys_endpoint or m.finetuning is not None for m in config.models)


def external_s3_uris(config: Config) -> tuple[str, ...]:
    """s3:// locations the config reads outside the platform's own buckets (dataset, training data, recordings)."""
    uris: list[str] = [config.dataset.input_data_location]
    for model in config.models:
        if model.finetuning is not None:
            uris += [model.finetuning.train_data_path, model.finetuning.validation_data_path or ""]
        uris.append(model.responses_location or "")
    return tuple(dict.fromkeys(u for u in uris if is_s3(u)))
