"""The processing image, built by CDK from `step_code/Dockerfile` at deploy time (synth needs no Docker).

The image holds dependencies and baked model assets; the step code reaches the jobs as a separate zip.
So the build context is only what the Dockerfile copies: editing a step does not rebuild a multi-gigabyte
image, and caches or tests in the folder never reach it.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

DOCKERFILE = "Dockerfile"


_INSTRUCTION = re.compile(r"^(COPY|ADD)\s+((?:--\S+\s+)*)(.*)$", re.IGNORECASE)


def _copy_sources(instruction: str) -> list[str]:
    """What one COPY/ADD instruction reads from the build context (shell or JSON form)."""
    match = _INSTRUCTION.match(instruction)
    # COPY --from= reads another build stage, not the context.
    if match is None or "--from=" in match.group(2):
        return []
    arguments = match.group(3).strip()
    words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
    return [str(word).removeprefix("./").rstrip("/") for word in words[:-1]]


def build_context_files(dockerfile: Path) -> list[str]:
    """The Dockerfile and every path its COPY/ADD instructions read from the build context."""
    instructions = dockerfile.read_text(encoding="utf-8").replace("\\\n", " ").splitlines()
    sources = [dockerfile.name]
    for instruction in instructions:
        sources += _copy_sources(instruction.strip())
    return list(dict.fromkeys(sources))


def context_exclude(directory: Path) -> list[str]:
    """Exclude patterns that keep only the build context files (a copied folder with all it holds)."""
    keep: list[str] = []
    for path in build_context_files(directory / DOCKERFILE):
        keep += [f"!{path}", f"!{path}/**"] if (directory / path).is_dir() else [f"!{path}"]
    return ["*", *keep, "**/__pycache__", "**/*.pyc"]


def step_image(
    scope: Construct, construct_id: str, *, directory: Path, gpu: bool = False
) -> ecr_assets.DockerImageAsset:
    """The step image; `gpu`: its variant with torch's CUDA build, whose jobs put the judge models on the GPU."""
    return ecr_assets.DockerImageAsset(
        scope,
        construct_id,
        directory=str(directory),
        file=DOCKERFILE,
        build_args={"JUDGE_DEVICE": "cuda"} if gpu else None,
        exclude=context_exclude(directory),
        # Processing instances (ml.m5 and the like) are x86_64, whatever machine runs `cdk deploy`.
        platform=ecr_assets.Platform.LINUX_AMD64,
    )
