"""The app as `cdk synth` runs it: offline, without credentials, byte-identical, with one-line errors."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stacks.conftest import SynthesizedApp, cdk_context

CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def offline_environment(repo_root: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in CREDENTIAL_VARIABLES}
    env.update(
        {
            "AWS_EC2_METADATA_DISABLED": "true",
            # Any AWS call would go here and fail: nothing listens on port 9.
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
            "PATH": f"{repo_root / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    return env


def cdk_synth(repo_root: Path, outdir: Path, *context: str) -> subprocess.CompletedProcess[str]:
    arguments = [str(repo_root / "node_modules" / ".bin" / "cdk"), "synth", "--quiet", "--output", str(outdir)]
    for item in context:
        arguments += ["-c", item]
    return subprocess.run(
        arguments, cwd=repo_root, env=offline_environment(repo_root), capture_output=True, text=True, timeout=600
    )


def differences(left: Path, right: Path) -> list[str]:
    comparison = filecmp.dircmp(left, right)
    found = [str(left / name) for name in comparison.left_only + comparison.right_only + comparison.diff_files]
    for name in comparison.common_files:
        if not filecmp.cmp(left / name, right / name, shallow=False):
            found.append(str(left / name))
    for name in comparison.common_dirs:
        found += differences(left / name, right / name)
    return found


@pytest.mark.slow
def test_make_synth_is_offline_and_reproducible(repo_root: Path, tmp_path: Path) -> None:
    first = cdk_synth(repo_root, tmp_path / "first", "config=configs/sample.yaml")
    assert first.returncode == 0, first.stderr
    second = cdk_synth(repo_root, tmp_path / "second", "config=configs/sample.yaml")
    assert second.returncode == 0, second.stderr
    templates = sorted(p.name for p in (tmp_path / "first").glob("assembly-evalops-dev/*.template.json"))
    assert len(templates) == 4
    assert differences(tmp_path / "first", tmp_path / "second") == []


def run_app(repo_root: Path, context: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """app.py as the CDK CLI starts it: context in CDK_CONTEXT_JSON, the output folder in CDK_OUTDIR."""
    env = offline_environment(repo_root)
    env.update({"CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path / "out")})
    return subprocess.run(
        [sys.executable, "app.py"], cwd=repo_root, env=env, capture_output=True, text=True, timeout=600
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What the app reported; jsii may add a banner about the Node.js version around it."""
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_a_bad_config_is_reported_in_one_line_each(repo_root: Path, tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text((repo_root / "configs/sample.yaml").read_text().replace("parallelism: 4", "parallelism: 0"))
    result = run_app(repo_root, {"config": str(config)}, tmp_path)
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: {config}:9: pipeline.parallelism: expected greater than or equal to 1, got 0"
    ]


def test_an_unknown_environment_is_reported(repo_root: Path, tmp_path: Path) -> None:
    result = run_app(repo_root, {"env": "nowhere"}, tmp_path)
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: {repo_root / 'configs/environments.yaml'}: environments: no environment named 'nowhere' (known: dev)"
    ]


@pytest.mark.slow
def test_building_the_app_imports_no_evaluation_libraries(repo_root: Path, tmp_path: Path) -> None:
    probe = (
        "import json, sys, aws_cdk as cdk;"
        "from pathlib import Path;"
        "from stacks.app_builder import AppOptions, build_app;"
        f"root = Path({str(repo_root)!r});"
        f"app = cdk.App(outdir={str(tmp_path / 'out')!r});"
        "build_app(app, AppOptions(environments_file=root / 'configs/environments.yaml',"
        " config_override=root / 'configs/reference.yaml'), root);"
        "app.synth();"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    env = offline_environment(repo_root)
    env["CDK_CONTEXT_JSON"] = json.dumps(cdk_context(repo_root))
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.splitlines()[-1]))
    assert "stacks" in loaded and "aws_cdk" in loaded
    assert not loaded & {"torch", "ray", "fmeval", "transformers"}


def test_two_environments_become_two_stages_with_their_own_names(mixed_app: SynthesizedApp) -> None:
    names = [[stack.stack_name for stack in s.stacks] for s in mixed_app.stages]
    assert names == [
        ["evalops-dev-storage", "evalops-dev-registry", "evalops-dev-evaluation", "evalops-dev-safety-net"],
        ["acme-prod-storage", "acme-prod-registry", "acme-prod-evaluation", "acme-prod-safety-net"],
    ]
    assert [(s.stage_name, s.account, s.region) for s in mixed_app.stages] == [
        ("evalops-dev", "111111111111", "us-east-1"),
        ("acme-prod", "222222222222", "eu-west-1"),
    ]
    assert sorted(p.parent.name for p in mixed_app.template_files())[::4] == [
        "assembly-acme-prod",
        "assembly-evalops-dev",
    ]
