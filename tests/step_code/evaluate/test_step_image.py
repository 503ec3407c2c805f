"""The step image's Dockerfile, checked without a Docker engine: pins, offline settings, the user SageMaker expects."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from step_code import offline_assets

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
CACHE_VARIABLES = ("HF_HOME", "TORCH_HOME", "NLTK_DATA")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: {line!r} is not pinned with =="
            found[normalize(name)] = version
    return found


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def env_names(arguments: str) -> set[str]:
    return set(re.findall(r"(\w+)=", arguments))


@pytest.fixture(scope="module")
def steps(repo_root: Path) -> list[tuple[str, str]]:
    return instructions(repo_root / "step_code" / "Dockerfile")


def test_requirements_are_pinned_to_the_constraints(repo_root: Path) -> None:
    constraints = pins(repo_root / "requirements" / "constraints.txt")
    image = pins(repo_root / "step_code" / "requirements-image.txt")
    assert {"fmeval", "pyarrow", "sagemaker", "boto3", "pydantic", "pyyaml", "jmespath", "ray"} <= image.keys()
    assert {name: version for name, version in image.items() if constraints.get(name) != version} == {}
    assert int(image["pyarrow"].split(".")[0]) < 26


def test_torch_is_the_pinned_cpu_version(repo_root: Path, steps: list[tuple[str, str]]) -> None:
    constraints = pins(repo_root / "requirements" / "constraints.txt")
    torch_arg = next(args for keyword, args in steps if keyword == "ARG" and args.startswith("TORCH_VERSION="))
    assert constraints["torch"].split("+")[0] == torch_arg.split("=", 1)[1]
    install = next(args for keyword, args in steps if keyword == "RUN" and "torch==" in args)
    assert "+cpu" in install
    first_requirements = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "requirements-image.txt" in a)
    assert steps.index(("RUN", install)) < first_requirements


def test_assets_are_baked_into_env_paths_then_hubs_switched_off(steps: list[tuple[str, str]]) -> None:
    assert steps[0][0] == "FROM" and re.match(r"python:3\.11-slim", steps[0][1])
    bake = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "step_code.offline_assets --check" in a)
    assert "python -m step_code.offline_assets $models;" in steps[bake][1]
    set_before = set().union(*(env_names(a) for k, a in steps[:bake] if k == "ENV"))
    set_after = set().union(*(env_names(a) for k, a in steps[bake:] if k == "ENV"))
    assert set(CACHE_VARIABLES) <= set_before
    assert set(OFFLINE_VARIABLES) <= set_after and not set(OFFLINE_VARIABLES) & set_before
    default_models = next(a for k, a in steps if k == "ARG" and a.startswith("BERTSCORE_MODELS="))
    assert offline_assets.BERTSCORE_DEFAULT_MODEL in default_models


def test_runs_as_the_user_sagemaker_processing_expects(steps: list[tuple[str, str]]) -> None:
    # SageMaker mounts the processing input/output folders owned by root; a USER switch breaks writing outputs.
    assert [args for keyword, args in steps if keyword == "USER"] == []


def test_copied_files_exist_in_the_build_context(repo_root: Path, steps: list[tuple[str, str]]) -> None:
    for keyword, args in steps:
        if keyword == "COPY":
            *sources, _destination = args.split()
            for source in sources:
                assert (repo_root / "step_code" / source).is_file(), source
