"""The `delivery:` section of the environments file, and where the connection ARN comes from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from pipeline_definitions.loading.environments import DEFAULT_TRIGGER_PATHS, MAX_TRIGGER_PATHS, EnvironmentsFile
from pipeline_definitions.loading.loader import ConfigError
from stacks.delivery_stack import CONNECTION_ARN_CONTEXT_KEY, resolve_connection_arn
from tests.delivery.conftest import CONNECTION_ARN, TOOLING_ACCOUNT, environments_file


def test_defaults_cover_config_prompts_step_code_and_infrastructure() -> None:
    delivery = environments_file().delivery
    assert delivery is not None
    assert delivery.branch == "main"
    assert delivery.trigger_paths == DEFAULT_TRIGGER_PATHS
    assert len(DEFAULT_TRIGGER_PATHS) <= MAX_TRIGGER_PATHS
    for pattern in ("configs/**", "prompt_catalog/**", "step_code/**", "stacks/**", "scripts/**"):
        assert pattern in delivery.trigger_paths


def test_more_trigger_paths_than_codepipeline_accepts_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"delivery\.trigger_paths"):
        environments_file(trigger_paths=[f"dir{i}/**" for i in range(MAX_TRIGGER_PATHS + 1)])


def test_absolute_trigger_path_is_refused() -> None:
    with pytest.raises(ValidationError, match="repository-relative glob"):
        environments_file(trigger_paths=["/configs/**"])


def test_stages_must_name_known_environments_once() -> None:
    with pytest.raises(ValidationError, match=r"delivery\.stages names unknown environments: staging"):
        environments_file(stages=["dev", "staging"])
    with pytest.raises(ValidationError, match="lists an environment twice"):
        environments_file(stages=["dev", "dev"])


def test_stages_choose_order_and_subset() -> None:
    assert [env.name for env in environments_file(stages=["prod", "dev"]).delivery_environments()] == ["prod", "dev"]
    assert [env.name for env in environments_file(stages=["prod"]).delivery_environments()] == ["prod"]
    assert [env.name for env in environments_file().delivery_environments()] == ["dev", "prod"]


def test_environment_without_account_is_delivered_to_the_tooling_account() -> None:
    envs = EnvironmentsFile.model_validate(
        {
            "environments": [{"name": "dev", "config": "configs/sample.yaml"}],
            "delivery": {"account": TOOLING_ACCOUNT, "repository": "acme/evalops"},
        }
    )
    assert envs.environments[0].account is None
    assert [env.account for env in envs.delivery_environments()] == [TOOLING_ACCOUNT]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("account", "12345", "not an AWS account id"),
        ("repository", "evalops", "not a repository"),
        ("branch", "a..b", "not a git branch name"),
        ("connection_arn", "arn:aws:codecommit:us-east-1:333333333333:repo", "not a connection ARN"),
        ("prompt_catalog_source", {"bucket": "acme-prompts", "key": "catalog.jsonl"}, "ending in .zip"),
        ("prompt_catalog_source", {"bucket": "Acme_Prompts", "key": "catalog.zip"}, "not an S3 bucket name"),
        ("name", "Evalops Delivery", "not a valid pipeline name"),
    ],
)
def test_bad_values_are_named(key: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        environments_file(**{key: value})


def test_codestar_connections_arn_is_accepted() -> None:
    arn = "arn:aws:codestar-connections:eu-west-1:333333333333:connection/12345678-1234-1234-1234-123456789012"
    delivery = environments_file(connection_arn=arn).delivery
    assert delivery is not None and delivery.connection_arn == arn


def test_shipped_environments_file_has_no_delivery_and_its_example_is_valid(repo_root: Path) -> None:
    text = (repo_root / "configs" / "environments.yaml").read_text()
    envs = EnvironmentsFile.model_validate(yaml.safe_load(text))
    assert envs.delivery is None
    assert [env.name for env in envs.environments] == ["dev"]
    example = text[text.index("# delivery:") :]
    uncommented = "\n".join(line.removeprefix("# ").removeprefix("#") for line in example.splitlines())
    with_example = EnvironmentsFile.model_validate({**yaml.safe_load(text), **yaml.safe_load(uncommented)})
    assert with_example.delivery is not None
    assert [env.account for env in with_example.delivery_environments()] == [with_example.delivery.account]


def test_context_connection_arn_wins_over_the_file() -> None:
    delivery = environments_file().delivery
    assert delivery is not None
    other = CONNECTION_ARN.replace("12345678-", "87654321-")
    assert resolve_connection_arn(delivery, None, source="envs.yaml") == CONNECTION_ARN
    assert resolve_connection_arn(delivery, other, source="envs.yaml") == other


def test_missing_or_malformed_connection_arn_is_one_line_naming_where_to_set_it() -> None:
    delivery = environments_file(connection_arn=None).delivery
    assert delivery is not None
    with pytest.raises(ConfigError) as missing:
        resolve_connection_arn(delivery, None, source="configs/environments.yaml")
    assert str(missing.value) == (
        "configs/environments.yaml: delivery.connection_arn: not set: add the CodeConnections ARN here "
        f"or pass -c {CONNECTION_ARN_CONTEXT_KEY}=ARN"
    )
    with pytest.raises(ConfigError) as malformed:
        resolve_connection_arn(delivery, "nope", source="configs/environments.yaml")
    assert str(malformed.value).startswith(f"cdk context: {CONNECTION_ARN_CONTEXT_KEY}: 'nope' is not a connection ARN")


def codepipeline_glob(pattern: str) -> re.Pattern[str]:
    """CodePipeline's trigger globs: `**` crosses folders, `*` and `?` do not, `{a,b}` is either."""
    parts = re.split(r"(\*\*|\*|\?|\{[^}]*\})", pattern)
    regex = ""
    for part in parts:
        if part == "**":
            regex += ".*"
        elif part == "*":
            regex += "[^/]*"
        elif part == "?":
            regex += "[^/]"
        elif part.startswith("{") and part.endswith("}"):
            regex += "(" + "|".join(re.escape(choice) for choice in part[1:-1].split(",")) + ")"
        else:
            regex += re.escape(part)
    return re.compile(regex)


def test_default_trigger_paths_cover_every_file_the_build_installs_from(repo_root: Path) -> None:
    # The set-up script re-installs when one of the files it hashes changes; the synth reads app.py and cdk.json.
    setup = (repo_root / "scripts/setup.sh").read_text()
    hashed = re.search(r"want=\$\(cat (.*?) \|", setup)
    assert hashed is not None
    files = {path for pattern in hashed.group(1).split() for path in repo_root.glob(pattern)}
    files |= {repo_root / "app.py", repo_root / "cdk.json", repo_root / "scripts/setup.sh"}
    assert repo_root / "package.json" in files and repo_root / "package-lock.json" in files
    patterns = [codepipeline_glob(pattern) for pattern in DEFAULT_TRIGGER_PATHS]
    uncovered = sorted(
        path.relative_to(repo_root).as_posix()
        for path in files
        if not any(p.fullmatch(path.relative_to(repo_root).as_posix()) for p in patterns)
    )
    assert uncovered == []
    assert not codepipeline_glob("{app.py,cdk.json}").fullmatch("configs/app.py")
