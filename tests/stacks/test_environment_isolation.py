"""Environments in one account cannot reach each other's resources: their name scopes are disjoint by construction."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline_definitions.loading.environments import Environment, load_environments
from pipeline_definitions.loading.loader import ConfigError
from step_code.contract.naming import run_scoped_name

# Short names over a small alphabet with the delimiter in it: collisions such as `dev` / `dev-b` are found fast.
PART = st.text(alphabet="ab0-", min_size=1, max_size=5).map(lambda text: "d" + text)
BASES = st.text(alphabet="abc-", min_size=1, max_size=8)


def environment(prefix: str, name: str) -> Environment | None:
    """The environment, or None where the environments file refuses it."""
    try:
        return Environment(name=name, prefix=prefix, config="configs/sample.yaml")
    except ValidationError:
        return None


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(first=st.tuples(PART, PART), second=st.tuples(PART, PART), base=BASES)
def test_no_environment_policy_pattern_matches_another_environments_names(
    first: tuple[str, str], second: tuple[str, str], base: str
) -> None:
    """What `{prefix}-{name}-*` (every name-scoped IAM statement) allows never includes another environment's names."""
    a, b = environment(*first), environment(*second)
    if a is None or b is None or (a.prefix, a.name) == (b.prefix, b.name):
        return
    created_by_b = run_scoped_name(b.resource_prefix, base, "execution0001")
    assert not fnmatchcase(created_by_b, f"{a.resource_prefix}*"), (a, b, created_by_b)
    assert not fnmatchcase(f"{b.resource_prefix}sagemaker-execution", f"{a.resource_prefix}*")


def test_the_example_of_the_issue_is_refused_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "environments.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "environments": [
                    {"name": "dev", "config": "configs/sample.yaml"},
                    {"name": "dev-b", "config": "configs/sample.yaml"},
                    {"name": "c", "prefix": "evalops-dev", "config": "configs/sample.yaml"},
                ]
            }
        )
    )
    with pytest.raises(ConfigError) as error:
        load_environments(path)
    assert [str(problem) for problem in error.value.problems] == [
        f"{path}:5: environments[1].name: 'dev-b' is not a valid environment name "
        "(expected 1-15 of a-z 0-9, starting a-z; no hyphen, it delimits resource names)",
        f"{path}:8: environments[2].prefix: 'evalops-dev' is not a valid name prefix "
        "(expected 1-16 of a-z 0-9, starting a-z; no hyphen, it delimits resource names)",
    ]
