"""Properties over generated configs and catalogs: whatever the input, the answer is an exit status and lines.

`evalops validate` exits 0 or 2 and prints one line per problem (each naming the file), never a traceback;
preprocess exits 0 or 1 (the steps' convention) and accounts for every row: rows in = kept + quarantined +
duplicates. hypothesis generates the inputs from a fixed seed (`derandomize`), a bounded number of them, and
shrinks a failing one to a minimal reproduction.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_definitions.cli.main import main as evalops
from pipeline_definitions.loading.loader import load_config
from step_code.contract.files import MANIFEST_FILE, PROCESSED_FILE, QUARANTINE_FILE
from step_code.jsonl import JSON_WHITESPACE
from step_code.preprocess import main as preprocess
from tests.conftest import REPO_ROOT

BOUNDED = settings(
    derandomize=True,
    database=None,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

BASE_CONFIG: dict[str, Any] = {
    "pipeline": {"name": "p", "parallelism": 2},
    "dataset": {
        "dataset_name": "d",
        "input_data_location": "trivia.jsonl",
        "model_input_key": "question",
        "target_output_key": "answer",
        "max_quarantine_fraction": 0.5,
    },
    "models": [
        {"name": "m1", "model_provider": "recorded", "responses_location": "recorded/m1.jsonl"},
        {
            "name": "m2",
            "model_provider": "openai",
            "endpoint_url": "http://127.0.0.1:9/v1/chat/completions",
            "evaluation_config": {"prompt_template": "Q: $model_input", "inference_parameters": {"temperature": 0.1}},
        },
        {
            "name": "ft",
            "model_id": "meta-textgeneration-llama-2-7b",
            "deployment_config": {"instance_type": "ml.g5.2xlarge"},
            "evaluation_config": {"output": "[0].generated_text", "content_template": "PROMPT_PLACEHOLDER"},
            "finetuning": {
                "train_data_path": "s3://bucket/train/",
                "parameters": {"instance_type": "ml.g5.12xlarge", "epoch": 1, "instruction_tuned": True},
            },
        },
    ],
    "model_registry": {"model_package_group_name": "g"},
    "algorithms": [{"algorithm": "FactualKnowledge"}, {"algorithm": "QAAccuracy"}],
    "selection": {"primary_metric": "factual_knowledge", "weights": {"factual_knowledge": 1.0, "f1_score": 0.5}},
    "pricing": {"instance_usd_per_hour": {"ml.m5.large": 0.1}},
}


def key_paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix] if prefix else []
    children = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    for key, value in children:
        paths += key_paths(value, (*prefix, key))
    return paths


PATHS = key_paths(BASE_CONFIG)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["$model_input $x", "$", "{ PROMPT_PLACEHOLDER", "ftp://h/", "ml.x", "-1", "x" * 5000]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=6), SCALARS, max_size=3))
MUTATIONS = st.lists(
    st.tuples(st.sampled_from(["replace", "delete", "add"]), st.sampled_from(PATHS), VALUES), max_size=4
)
RAW_YAML = st.sampled_from(
    [
        "",
        "- a\n- b\n",
        "a: &x [*x]\n",
        "pipeline: {name: p}\npipeline: {name: q}\n",
        "a: [" * 200,
        "x: !!python/object:os.system ls\n",
        "\t- tab\n",
        "base: &b {name: p}\npipeline:\n  <<: *b\n  name: q\n",
    ]
)


def mutated(mutations: list[tuple[str, tuple[Any, ...], Any]]) -> Any:
    data = json.loads(json.dumps(BASE_CONFIG))
    for operation, path, value in mutations:
        parent: Any = data
        for part in path[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            last = path[-1]
            if isinstance(parent, dict) and operation == "add":
                parent[f"{last}_extra"] = value
            elif isinstance(parent, dict) and operation == "delete":
                parent.pop(last, None)
            elif isinstance(parent, dict) or (
                isinstance(parent, list) and isinstance(last, int) and last < len(parent)
            ):
                parent[last] = value
    return data


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("properties")
    (root / "cdk.json").write_text("{}\n", encoding="utf-8")
    (root / "prompt_catalog" / "recorded").mkdir(parents=True)
    (root / "prompt_catalog" / "trivia.jsonl").write_text('{"question": "q", "answer": "a"}\n', encoding="utf-8")
    (root / "prompt_catalog" / "recorded" / "m1.jsonl").write_text('{"model_output": "a"}\n', encoding="utf-8")
    return root


def run_validate(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = evalops(["validate", str(path)])
    return code, out.getvalue(), err.getvalue()


def test_the_base_config_is_valid(workspace: Path) -> None:
    path = workspace / "base.yaml"
    path.write_text(yaml.safe_dump(BASE_CONFIG), encoding="utf-8")
    assert run_validate(path)[0] == 0


@pytest.mark.timeout(300)
@BOUNDED
@given(mutations=MUTATIONS, raw=st.one_of(st.none(), RAW_YAML))
def test_validate_answers_every_config_with_0_or_2_and_one_line_per_problem(
    workspace: Path, mutations: list[tuple[str, tuple[Any, ...], Any]], raw: str | None
) -> None:
    path = workspace / "configs" / "generated.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        raw if raw is not None else yaml.safe_dump(mutated(mutations), allow_unicode=True), encoding="utf-8"
    )

    code, out, err = run_validate(path)

    assert code in (0, 2), err
    assert "Traceback" not in err and "internal error" not in err
    lines = err.splitlines()
    if code == 0:
        assert out.startswith(f"OK: {path}: ") and out.count("\n") == 1
        assert all(line.startswith(f"warning: {path}") for line in lines), err
    else:
        assert out == "" and lines, err
        assert all(line.startswith(f"{path}") and len(line) <= 1200 for line in lines), err
        assert len(lines) == len(set(lines))


GOOD_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), whitelist_characters="\u2028\u2029\x0c\x85\r"), min_size=1, max_size=8
)
BAD_LINES = [
    "{not json",
    '{"question": "q", "answer": NaN}',
    '{"question": "q", "answer": "a", "n": ' + "7" * 4301 + "}",
    '{"question": ' + "[" * 150 + "]" * 150 + ', "answer": "a"}',
    '{"question": "\\udc00", "answer": "a"}',
    '["question", "answer"]',
    '{"question": true, "answer": "a"}',
    '{"question": "q"}',
    "\x0c",
    " \t",
    "",
]
ROW = st.one_of(
    st.builds(lambda q, a: json.dumps({"question": q, "answer": a}, ensure_ascii=False), GOOD_TEXT, GOOD_TEXT),
    st.just("DUPLICATE"),
    st.sampled_from(BAD_LINES),
    st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=12),
)


@pytest.fixture(scope="module")
def preprocess_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = load_config(REPO_ROOT / "configs" / "sample.yaml").config
    data = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["dataset"].update(input_data_location="rows.jsonl", max_quarantine_fraction=1.0)
    path = tmp_path_factory.mktemp("preprocess") / "config.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.timeout(300)
@BOUNDED
@given(rows=st.lists(ROW, max_size=25), bom=st.booleans(), crlf=st.booleans())
def test_preprocess_accounts_for_every_row(
    preprocess_config: Path, tmp_path_factory: pytest.TempPathFactory, rows: list[str], bom: bool, crlf: bool
) -> None:
    folder = tmp_path_factory.mktemp("run")
    (folder / "catalog").mkdir()
    written = [
        next((r for r in rows[:n] if r.startswith('{"question"')), "{}") if row == "DUPLICATE" else row
        for n, row in enumerate(rows)
    ]
    text = ("\ufeff" if bom else "") + ("\r\n" if crlf else "\n").join(written)
    (folder / "catalog" / "rows.jsonl").write_text(text, encoding="utf-8")
    expected_rows = sum(1 for line in text.removeprefix("\ufeff").split("\n") if line.strip(JSON_WHITESPACE))

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = preprocess(
            [
                "--config",
                str(preprocess_config),
                "--output-dir",
                str(folder / "o"),
                "--catalog-dir",
                str(folder / "catalog"),
            ]
        )

    assert code in (0, 1)
    assert "Traceback" not in err.getvalue()
    quarantine = [json.loads(line) for line in (folder / "o" / QUARANTINE_FILE).read_text("utf-8").split("\n") if line]
    assert all(isinstance(entry["line"], int) and entry["reason"] for entry in quarantine)
    if code == 1:
        assert [line for line in err.getvalue().splitlines() if "error" in line] == [err.getvalue().strip()]
        assert len(quarantine) == expected_rows
        return
    manifest = json.loads((folder / "o" / MANIFEST_FILE).read_text("utf-8"))
    kept = [line for line in (folder / "o" / PROCESSED_FILE).read_text("utf-8").split("\n") if line]
    assert manifest["rows_in"] == expected_rows
    assert manifest["rows_in"] == len(kept) + len(quarantine) + manifest["duplicates"]
    assert (manifest["rows_kept"], manifest["quarantined"]) == (len(kept), len(quarantine))
    assert len(manifest["duplicate_rows"]) == manifest["duplicates"]
