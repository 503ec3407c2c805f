"""Reading the environments file and the context: every problem is one line naming file, key and what is wrong."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest
import yaml

from pipeline_definitions.loading.environments import load_environments
from pipeline_definitions.loading.loader import ConfigError
from stacks.app_builder import (
    AppOptions,
    StageFactory,
    check_environments,
    check_repository,
    select_environments,
)


def problems(error: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(problem) for problem in error.value.problems]


def write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_a_missing_environments_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_environments(tmp_path / "environments.yaml")
    assert problems(error) == [f"{tmp_path / 'environments.yaml'}: no such file"]


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "environments.yaml", "environments:\n  - name: dev\n    config: [unclosed\n")
    with pytest.raises(ConfigError) as error:
        load_environments(path)
    (line,) = problems(error)
    assert line.startswith(f"{path}:4: invalid YAML")


def test_invalid_entries_name_their_lines_and_key_paths(tmp_path: Path) -> None:
    path = write(
        tmp_path / "environments.yaml",
        {"environments": [{"name": "dev", "account": "12345", "config": "c.yaml"}, {"name": "Prod"}]},
    )
    with pytest.raises(ConfigError) as error:
        load_environments(path)
    assert problems(error) == [
        f"{path}:2: environments[0].account: '12345' is not an AWS account id (expected 12 digits)",
        f"{path}:5: environments[1].name: 'Prod' is not a valid environment name "
        "(expected 1-15 of a-z 0-9, starting a-z; no hyphen, it delimits resource names)",
        f"{path}:5: environments[1].config: Field required",
    ]


def test_an_unknown_environment_is_named_with_the_known_ones(repo_root: Path) -> None:
    path = repo_root / "configs/environments.yaml"
    with pytest.raises(ConfigError) as error:
        select_environments(load_environments(path), "staging", path)
    assert problems(error) == [f"{path}: environments: no environment named 'staging' (known: dev)"]


def test_context_paths_are_taken_from_the_repository_root(repo_root: Path) -> None:
    app = cdk.App(context={"config": "configs/sample.yaml", "env": "dev"})
    options = AppOptions.from_context(app, repo_root)
    assert options == AppOptions(
        environments_file=repo_root / "configs/environments.yaml",
        config_override=repo_root / "configs/sample.yaml",
        only="dev",
    )
    assert AppOptions.from_context(cdk.App(context={"environments": "e.yaml"}), repo_root) == AppOptions(
        environments_file=repo_root / "e.yaml"
    )


def test_two_environments_in_one_account_may_not_claim_the_same_names(repo_root: Path, tmp_path: Path) -> None:
    path = write(
        tmp_path / "environments.yaml",
        {
            "environments": [
                {"name": "dev", "config": "configs/sample.yaml"},
                {"name": "test", "config": "configs/sample.yaml"},
                {"name": "a", "prefix": "evalopsdev", "account": "111111111111", "config": "configs/reference.yaml"},
            ]
        },
    )
    environments = load_environments(path).environments
    with pytest.raises(ConfigError) as error:
        check_environments(environments, StageFactory(repo_root), path)
    assert problems(error) == [
        f"{path}: environments: dev and test both create model package group 'evalops-sample-trivia' in the "
        "deploying account, us-east-1; give one of them another config or account",
    ]


def test_configs_are_loaded_once_per_file(repo_root: Path) -> None:
    environments = load_environments(repo_root / "configs/environments.yaml").environments
    factory = StageFactory(repo_root)
    assert factory.load(environments[0]) is factory.load(environments[0])
    override = StageFactory(repo_root, repo_root / "configs/reference.yaml")
    assert override.load(environments[0]).config.pipeline.name == "llm-evaluation-multi-models-hybrid"


def test_the_step_image_dockerfile_must_exist(tmp_path: Path, repo_root: Path) -> None:
    check_repository(repo_root)
    with pytest.raises(ConfigError) as error:
        check_repository(tmp_path)
    assert problems(error) == [
        f"{tmp_path / 'step_code' / 'Dockerfile'}: missing: the step image is built from this file"
    ]
