"""Synth cost: `cdk synth` wall time for 1, 10 and 50 models against an app with one empty stack.

Also prints the size of the pipeline definition and of each template against CloudFormation's limits.
Numbers are printed, never asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import REPO_ROOT, print_table

TEMPLATE_BODY_LIMIT = 1_000_000  # CloudFormation template body in S3, bytes
RESOURCES_LIMIT = 500  # resources per stack
EMPTY_APP = """
import aws_cdk as cdk
app = cdk.App()
cdk.Stack(app, "Empty")
app.synth()
"""


def _config_with_models(count: int) -> dict[str, object]:
    with (REPO_ROOT / "configs" / "reference.yaml").open() as handle:
        config = yaml.safe_load(handle)
    base = config["models"][1]  # a JumpStart model with deploy, evaluate and cleanup steps
    config["pipeline"]["name"] = f"bench-{count}-models"
    config["models"] = [
        {**base, "name": f"candidate-{index:02d}", "endpoint_name": f"bench-candidate-{index:02d}"}
        for index in range(count)
    ]
    return config


def _cdk(args: list[str], cwd: Path) -> float:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_") or key == "AWS_DEFAULT_REGION"}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_DEFAULT_REGION=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION="1",
        PATH=f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    started = time.perf_counter()
    subprocess.run(
        [str(REPO_ROOT / "node_modules" / ".bin" / "cdk"), *args],
        cwd=cwd,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return time.perf_counter() - started


def _template_sizes(outdir: Path) -> list[tuple[str, int, int, str]]:
    rows: list[tuple[str, int, int, str]] = []
    for template in sorted(outdir.rglob("*.template.json")):
        body = template.read_bytes()
        resources = json.loads(body).get("Resources", {})
        definition_size: str = ""
        for resource in resources.values():
            if resource.get("Type") == "AWS::SageMaker::Pipeline":
                definition = resource["Properties"].get("PipelineDefinition", {})
                located = "PipelineDefinitionS3Location" in definition
                definition_size = "in S3" if located else f"{len(json.dumps(definition).encode()):,} inline"
        rows.append((template.name, len(body), len(resources), definition_size))
    return rows


def run(model_counts: tuple[int, ...] = (1, 10, 50)) -> None:
    print("== synth: `cdk synth` wall time and template sizes")
    with tempfile.TemporaryDirectory(prefix="evalops-synth-bench-") as tmp:
        work = Path(tmp)
        (work / "empty_app.py").write_text(EMPTY_APP)
        baseline = _cdk(
            ["synth", "--quiet", "--app", f"{sys.executable} empty_app.py", "-o", str(work / "empty")], work
        )
        timings = [("empty app (1 empty stack)", baseline, 1.0)]
        sizes: list[tuple[str, int, int, str]] = []
        # The config's folder is its prompt catalog (uploaded as an asset): keep the outputs out of it.
        catalog = work / "catalog"
        catalog.mkdir()
        shutil.copy(REPO_ROOT / "prompt_catalog" / "evaluation_dataset_trivia.jsonl", catalog)
        for count in model_counts:
            config_path = catalog / f"models-{count}.yaml"
            config_path.write_text(yaml.safe_dump(_config_with_models(count)))
            outdir = work / f"out-{count}"
            seconds = _cdk(["synth", "--quiet", "-c", f"config={config_path}", "-o", str(outdir)], REPO_ROOT)
            label = f"{count} model{'s' if count != 1 else ''}"
            timings.append((label, seconds, seconds / baseline))
            sizes += [(f"{label}: {name}", size, res, d) for name, size, res, d in _template_sizes(outdir)]
        print_table(["app", "seconds", "x empty app"], [(n, f"{s:.1f}", f"{r:.2f}") for n, s, r in timings])
        print()
        print_table(
            ["template", "bytes", f"% of {TEMPLATE_BODY_LIMIT:,}", "resources", "pipeline definition"],
            [
                (name, f"{size:,}", f"{100 * size / TEMPLATE_BODY_LIMIT:.1f}", f"{res}/{RESOURCES_LIMIT}", d)
                for name, size, res, d in sizes
                if size > 0
            ],
        )
