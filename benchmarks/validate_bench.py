"""`evalops validate` on large honest configs and on hostile ones: wall time and exit status of each.

Honest: 60 models (JumpStart, fine-tuned JumpStart, Bedrock, OpenAI-compatible, HTTP and recorded) with each of
the 12 fmeval algorithms of the table, one config per algorithm: some algorithms report the same score names
(the three toxicity ones, an accuracy and its robustness variant), which one config refuses, so no single
valid config holds all 12. Each must exit 0.
Hostile: the YAML alias bomb, 16,000 unknown keys, and a FIFO given as the config. Each must exit 2 with one
line per problem. Numbers are printed, never asserted; the exit statuses are the correctness checks.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import print_table
from pipeline_definitions.cli.main import main as evalops
from step_code.contract import algorithms

MODELS = 60
UNKNOWN_KEYS = 16_000
ALIAS_LEVELS = 9
EXIT_OK, EXIT_USER_ERROR = 0, 2


@dataclass
class ValidateBenchResult:
    seconds: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _model(index: int) -> dict[str, Any]:
    name = f"candidate-{index:02d}"
    evaluation = {"output": "[0].generated_text", "log_probability": "[0].details.log_probability"}
    kind = index % 6
    if kind in (0, 1):
        model: dict[str, Any] = {
            "name": name,
            "model_id": "huggingface-llm-falcon-7b-bf16",
            "deployment_config": {"instance_type": "ml.g5.2xlarge"},
            "evaluation_config": {**evaluation, "content_template": "PROMPT_PLACEHOLDER"},
        }
        if kind == 1:
            model["model_id"] = "meta-textgeneration-llama-2-7b"
            model["finetuning"] = {
                "train_data_path": "s3://bench-bucket/train/",
                "parameters": {"instance_type": "ml.g5.12xlarge", "epoch": 1, "instruction_tuned": True},
            }
        return model
    if kind == 2:
        return {
            "name": name,
            "model_provider": "bedrock",
            "model_id": "anthropic.claude-3-haiku-20240307-v1:0",
            "evaluation_config": {"log_probability": evaluation["log_probability"]},
        }
    if kind == 3:
        return {
            "name": name,
            "model_provider": "openai",
            "endpoint_url": f"http://127.0.0.1:9/{name}/v1/chat/completions",
            "evaluation_config": {"log_probability": evaluation["log_probability"]},
        }
    if kind == 4:
        return {
            "name": name,
            "model_provider": "http",
            "endpoint_url": f"http://127.0.0.1:9/{name}/generate",
            "evaluation_config": evaluation,
        }
    return {
        "name": name,
        "model_provider": "recorded",
        "responses_location": "recorded.jsonl",
        "evaluation_config": {"log_probability": evaluation["log_probability"]},
    }


def honest_config(algorithm: str, models: int) -> dict[str, Any]:
    return {
        "pipeline": {"name": "validate-bench", "parallelism": 10},
        "dataset": {
            "dataset_name": "bench",
            "input_data_location": "catalog.jsonl",
            "model_input_key": "question",
            "target_output_key": "answer",
            "sent_more_input_location": "more",
            "sent_less_input_location": "less",
        },
        "models": [_model(index) for index in range(models)],
        "model_registry": {"model_package_group_name": "validate-bench"},
        "algorithms": [{"algorithm": algorithm}],
    }


def alias_bomb(levels: int) -> str:
    lines = ['      l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"      l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, levels)]
    return (
        "pipeline: {name: p}\n"
        "dataset: {dataset_name: d, input_data_location: catalog.jsonl, model_input_key: q, target_output_key: a}\n"
        "models:\n  - name: m\n    model_provider: recorded\n    responses_location: recorded.jsonl\n"
        "    evaluation_config:\n     inference_parameters:\n" + "\n".join(lines) + f"\n      all: *l{levels - 1}\n"
        "model_registry: {model_package_group_name: g}\nalgorithms:\n  - {algorithm: FactualKnowledge}\n"
    )


def unknown_keys(count: int) -> str:
    """A valid config but for `count` unknown keys in its pipeline section."""
    config = honest_config("FactualKnowledge", 1)
    config["pipeline"].update({f"unknown_{n}": n for n in range(count)})
    return yaml.safe_dump(config, sort_keys=False)


def _validate(path: Path) -> tuple[int, float, list[str]]:
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = evalops(["validate", str(path)])
    seconds = time.perf_counter() - started
    return code, seconds, (out.getvalue() + err.getvalue()).splitlines()


def _workspace(root: Path) -> Path:
    (root / "cdk.json").write_text("{}\n", encoding="utf-8")
    catalog = root / "prompt_catalog"
    catalog.mkdir()
    rows = "".join(f'{{"question": "q{n}", "answer": "a{n}", "more": "m{n}", "less": "l{n}"}}\n' for n in range(100))
    (catalog / "catalog.jsonl").write_text(rows, encoding="utf-8")
    (catalog / "recorded.jsonl").write_text('{"model_input": "q0", "model_output": "a0"}\n', encoding="utf-8")
    (root / "configs").mkdir()
    return root / "configs"


def run(models: int = MODELS, unknown: int = UNKNOWN_KEYS, alias_levels: int = ALIAS_LEVELS) -> ValidateBenchResult:
    result = ValidateBenchResult()
    names = algorithms.algorithm_names()
    print(f"== validate: {models} models x each of the {len(names)} algorithms (one config per algorithm)")
    with tempfile.TemporaryDirectory(prefix="validate-bench-") as folder:
        configs = _workspace(Path(folder))
        rows: list[list[object]] = []
        for name in names:
            path = configs / f"{name}.yaml"
            path.write_text(yaml.safe_dump(honest_config(name, models), sort_keys=False), encoding="utf-8")
            code, seconds, said = _validate(path)
            result.seconds[name] = seconds
            rows.append([name, f"{path.stat().st_size:,}", code, f"{seconds:.3f}"])
            if code != EXIT_OK:
                result.problems.append(
                    f"validate: {name} with {models} models exited {code}: {said[0] if said else ''}"
                )
        total = sum(result.seconds.values())
        rows.append(["all 12, total", "", "", f"{total:.3f}"])
        print_table(["algorithm", "config bytes", "exit", "seconds"], rows)

        print()
        print("== validate: hostile configs (each must be refused with one line per problem)")
        fifo = configs / "fifo.yaml"
        os.mkfifo(fifo)
        hostile = {
            f"alias bomb ({alias_levels} levels of 9 aliases)": alias_bomb(alias_levels),
            f"{unknown:,} unknown keys": unknown_keys(unknown),
        }
        rows = []
        for label, text in hostile.items():
            path = configs / "hostile.yaml"
            path.write_text(text, encoding="utf-8")
            rows.append(_hostile_row(label, path, result, expected_lines=unknown if "unknown" in label else 1))
        rows.append(_hostile_row("a FIFO as the config", fifo, result, expected_lines=1))
        print_table(["input", "bytes", "exit", "lines", "seconds", "first line"], rows)
    return result


def _hostile_row(label: str, path: Path, result: ValidateBenchResult, expected_lines: int) -> list[object]:
    code, seconds, said = _validate(path)
    result.seconds[label] = seconds
    size = path.stat().st_size if path.is_file() else 0
    if code != EXIT_USER_ERROR or len(said) != expected_lines:
        result.problems.append(
            f"validate: {label}: exit {code} with {len(said)} lines (expected 2 and {expected_lines})"
        )
    first = said[0].removeprefix(f"{path}") if said else ""
    return [label, f"{size:,}", code, f"{len(said):,}", f"{seconds:.3f}", first[:90]]
