"""A one-model JumpStart catalogue on disk, so the SDK resolves JumpStart models without AWS.

The sagemaker SDK reads its JumpStart manifest and model specs from the folders named by
`AWS_JUMPSTART_MANIFEST_LOCAL_ROOT_DIR_OVERRIDE` and `AWS_JUMPSTART_SPECS_LOCAL_ROOT_DIR_OVERRIDE` when
both are set. The spec below has the fields the SDK's `JumpStartModelSpecs` reads to build a gated
text-generation model's inference container and training job; values are made up but shaped like
JumpStart's (a TGI serving image, a Hugging Face training image, prefix model data, a model channel).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MODEL_ID = "meta-textgeneration-llama-2-7b"
VERSION = "4.1.0"
SERVING_IMAGE = (
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
    "2.1.1-tgi1.4.0-gpu-py310-cu121-ubuntu22.04"
)
TRAINING_IMAGE = (
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:"
    "2.0.0-transformers4.28.1-gpu-py310-cu118-ubuntu20.04"
)
HOSTING_PREFIX = "meta-textgeneration/llama-2-7b/artifacts/inference-prepack/v1.0.0/"
GATED_BUCKET = "jumpstart-private-cache-prod-us-east-1"
STARTUP_TIMEOUT_SECONDS = 1200
SPEC_KEY = f"community_models/{MODEL_ID}/specs_v{VERSION}.json"


def _variants(alias: str, image: str) -> dict[str, Any]:
    return {
        "regional_aliases": {"us-east-1": {alias: image}},
        "variants": {family: {"regional_properties": {"image_uri": f"${alias}"}} for family in ("g5", "m5")},
    }


def _env(name: str, default: str) -> dict[str, Any]:
    return {"name": name, "type": "text", "default": default, "scope": "container", "required_for_model_class": True}


def _hyperparameter(name: str, default: Any, scope: str = "algorithm") -> dict[str, Any]:
    return {"name": name, "type": "text", "default": str(default), "scope": scope}


SPEC: dict[str, Any] = {
    "model_id": MODEL_ID,
    "url": "https://example.invalid/llama-2",
    "version": VERSION,
    "min_sdk_version": "2.0.0",
    "gated_bucket": True,
    "hosting_ecr_specs": {"framework": "huggingface-llm", "framework_version": "1.4.0", "py_version": "py310"},
    "hosting_artifact_key": HOSTING_PREFIX,
    "hosting_prepacked_artifact_key": HOSTING_PREFIX,
    "hosting_script_key": "source-directory-tarballs/meta/inference/textgeneration/v1.2.3/sourcedir.tar.gz",
    "hosting_use_script_uri": False,
    "hosting_instance_type_variants": _variants("tgi_image", SERVING_IMAGE),
    "inference_environment_variables": [
        _env("HF_MODEL_ID", "/opt/ml/model"),
        _env("SM_NUM_GPUS", "1"),
        _env("MAX_INPUT_LENGTH", "4095"),
    ],
    "deploy_kwargs": {
        "model_data_download_timeout": STARTUP_TIMEOUT_SECONDS,
        "container_startup_health_check_timeout": STARTUP_TIMEOUT_SECONDS,
    },
    "supported_inference_instance_types": ["ml.m5.large", "ml.g5.2xlarge"],
    "training_supported": True,
    "training_ecr_specs": {
        "framework": "huggingface",
        "framework_version": "2.0.0",
        "py_version": "py310",
        "huggingface_transformers_version": "4.28.1",
    },
    "training_artifact_key": "meta-training/train-meta-textgeneration-llama-2-7b.tar.gz",
    "training_script_key": "source-directory-tarballs/meta/transfer_learning/textgeneration/v1.0.11/sourcedir.tar.gz",
    "training_instance_type_variants": _variants("training_image", TRAINING_IMAGE),
    "supported_training_instance_types": ["ml.m5.xlarge", "ml.g5.12xlarge"],
    "hyperparameters": [
        _hyperparameter("epoch", 5),
        _hyperparameter("instruction_tuned", "False"),
        _hyperparameter("learning_rate", 0.0001),
        _hyperparameter("sagemaker_program", "transfer_learning.py", scope="container"),
    ],
}


def write_catalogue(root: Path) -> tuple[Path, Path]:
    """Write manifest and spec under `root`; returns the two folders the SDK's override variables name."""
    manifest_dir, specs_dir = root / "manifest", root / "specs"
    spec_path = specs_dir / SPEC_KEY
    spec_path.parent.mkdir(parents=True)
    manifest_dir.mkdir(parents=True)
    header = {"model_id": MODEL_ID, "version": VERSION, "min_version": "2.0.0", "spec_key": SPEC_KEY}
    (manifest_dir / "models_manifest.json").write_text(json.dumps([header]), encoding="utf-8")
    spec_path.write_text(json.dumps(SPEC), encoding="utf-8")
    return manifest_dir, specs_dir
