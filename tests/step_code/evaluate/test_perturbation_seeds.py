"""A record's perturbed prompts depend on the record and the config only: not on the order of the catalog,
not on the records added to it, not on the records planned or scored before it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from step_code import scoring
from step_code.contract.config import AlgorithmConfig, Config
from step_code.evaluate_step import main
from step_code.invocation_plan import InvocationPlanner, PlannedAlgorithmPrompts
from step_code.perturbation_seeds import RecordSeededPerturbation, record_generator, transform_seed
from step_code.preprocess import record_id
from tests.step_code.evaluate.conftest import EvaluateRun, make_run
from tests.support.model_server import ModelServer

LABELS = ("yes", "no", "maybe")
TEMPLATE = "Answer briefly: $model_input"
ROBUSTNESS = [
    {
        "algorithm": "ClassificationAccuracySemanticRobustness",
        "valid_labels": list(LABELS),
        "perturbation_type": kind,
        "num_perturbations": 3,
    }
    for kind in ("butter_finger", "random_upper_case", "whitespace_add_remove")
]


def question(i: int) -> str:
    return f"Is the number {i} worth asking about, all things considered?"


def processed_row(i: int) -> dict[str, str]:
    return {
        "record_id": record_id(question(i), LABELS[i % 3]),
        "model_input": question(i),
        "target_output": LABELS[i % 3],
    }


def planned_prompts(rows: list[dict[str, str]]) -> dict[str, str]:
    """Every planned prompt of `rows`, planned in that order by one planner, by the item's id."""
    planned = scoring.plan_scoring([AlgorithmConfig.model_validate(e) for e in ROBUSTNESS], skip_missing_judges=False)
    planner = InvocationPlanner(
        TEMPLATE,
        [PlannedAlgorithmPrompts(f"algorithms[{p.index}]", p.name, p.config_object) for p in planned],
    )
    return {item.record_id: item.prompt for row in rows for item in planner.items(row)}


def test_the_transform_seed_is_read_from_fmeval_and_the_generator_is_the_records() -> None:
    import numpy as np
    from fmeval.eval_algorithms.semantic_robustness_utils import SemanticRobustnessConfig, get_perturbation_transform
    from fmeval.transforms.common import GeneratePrompt
    from fmeval.transforms.semantic_perturbations import ButterFinger

    default = get_perturbation_transform(SemanticRobustnessConfig())
    assert transform_seed(default) == 5  # fmeval's own default, read from the transform
    assert transform_seed(ButterFinger("model_input", ["p"], num_perturbations=1, seed=11)) == 11
    with pytest.raises(TypeError, match=r"^GeneratePrompt is not one of fmeval's semantic perturbation transforms$"):
        transform_seed(GeneratePrompt(["a"], ["b"], "$model_input"))
    expected = np.random.default_rng([5, int.from_bytes(b"0a1b2c3d4e5f6a7b", "big")]).random(4)
    assert record_generator(5, "0a1b2c3d4e5f6a7b").random(4).tolist() == expected.tolist()


def test_a_record_is_perturbed_alike_whatever_was_perturbed_before_it() -> None:
    from fmeval.eval_algorithms.semantic_robustness_utils import SemanticRobustnessConfig, get_perturbation_transform
    from fmeval.transforms.semantic_perturbations import ButterFinger

    config = SemanticRobustnessConfig(num_perturbations=3)  # butter_finger, fmeval's seed
    rows = [processed_row(i) for i in range(6)]

    def perturbed(order: list[dict[str, str]], seeded: RecordSeededPerturbation) -> dict[str, list[str]]:
        out = {}
        for row in order:
            record = seeded.perturb(row["record_id"], {"model_input": row["model_input"]})
            out[row["record_id"]] = [record[key] for key in seeded.output_keys]
        return out

    forward = perturbed(rows, RecordSeededPerturbation(get_perturbation_transform(config)))
    backward = perturbed(rows[::-1], RecordSeededPerturbation(get_perturbation_transform(config)))
    assert forward == backward
    # Not vacuous: the records are perturbed, differently from each other and from one perturbation to the next.
    assert all(text != question(i) for i, row in enumerate(rows) for text in forward[row["record_id"]])
    assert len({text for texts in forward.values() for text in texts}) == 3 * len(rows)
    # The transform's seed is part of the key: another seed perturbs the same records otherwise.
    other = ButterFinger("model_input", get_perturbation_transform(config).output_keys, num_perturbations=3, seed=6)
    assert perturbed(rows, RecordSeededPerturbation(other)) != forward


def test_a_reordered_and_grown_catalog_plans_the_same_prompts_for_every_surviving_record() -> None:
    catalog = [processed_row(i) for i in range(8)]
    grown = [processed_row(100), processed_row(101), *catalog[::-1]]
    before, after = planned_prompts(catalog), planned_prompts(grown)
    # Per record: its prompt and 3 perturbed prompts for each of the 3 algorithms.
    assert len(before) == 8 * (1 + 3 * 3) and len(after) == 10 * (1 + 3 * 3)
    assert {key: after[key] for key in before} == before
    # Not vacuous: most perturbed prompts differ from their record's own prompt.
    changed = [prompt != before[key.split("/")[0]] for key, prompt in before.items() if "/" in key]
    assert sum(changed) > len(changed) // 2


def answer(prompt: str) -> str:
    """A deterministic answer that differs between a prompt and its perturbations (a hash of the prompt)."""
    draw = hashlib.sha256(prompt.encode("utf-8")).digest()[0]
    return ["yes it is", "no", "I would say maybe", "hard to tell really"][draw % 4]


def robustness_run(root: Path, url: str, indexes: list[int]) -> EvaluateRun:
    catalog = root / "catalog"
    catalog.mkdir(parents=True)
    rows = [{"question": question(i), "answer": LABELS[i % 3], "topic": ("even", "odd")[i % 2]} for i in indexes]
    (catalog / "questions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    config = Config.model_validate(
        {
            "pipeline": {"name": "seeds"},
            "dataset": {
                "dataset_name": "questions",
                "input_data_location": "questions.jsonl",
                "model_input_key": "question",
                "target_output_key": "answer",
                "category_key": "topic",
            },
            "models": [
                {
                    "name": "candidate",
                    "model_provider": "http",
                    "endpoint_url": f"{url}/generate",
                    "evaluation_config": {"prompt_template": TEMPLATE, "max_concurrency": 4},
                }
            ],
            "model_registry": {"model_package_group_name": "seeds"},
            "algorithms": ROBUSTNESS[:2],
        }
    )
    return make_run(root / "run", config, catalog)


def record_scores(run: EvaluateRun) -> list[dict[str, Any]]:
    """Per algorithm, each record's fmeval scores by its input."""
    output = run.output_dir("candidate")
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert [result["error"] for result in summary["algorithms"]] == [None, None]
    scored = []
    for result in summary["algorithms"]:
        rows = [json.loads(line) for line in (output / result["records_path"]).read_text(encoding="utf-8").splitlines()]
        scored.append({row["model_input"]: {s["name"]: s["value"] for s in row["scores"]} for row in rows})
    return scored


@pytest.mark.slow
def test_a_grown_catalog_sends_only_the_new_records_prompts_and_rescores_the_others_alike(tmp_path: Path) -> None:
    old, new = list(range(10)), [100, 101]
    with ModelServer(answers=answer) as server:
        first = robustness_run(tmp_path / "first", server.url, old)
        assert main(first.argv("candidate", cache=str(tmp_path / "cache"))) == 0
        server.reset_counters()
        # Two records added at the top and the others reversed; the same response cache.
        grown = robustness_run(tmp_path / "grown", server.url, [*new, *old[::-1]])
        assert main(grown.argv("candidate", cache=str(tmp_path / "cache"))) == 0
        calls_for_growth = server.requests_total
        server.reset_counters()
        alone = robustness_run(tmp_path / "alone", server.url, new)
        assert main(alone.argv("candidate", cache=str(tmp_path / "other-cache"))) == 0
        calls_for_new_records = server.requests_total

    # Growing the catalog costs what evaluating the new records alone costs: every old prompt is a cache hit.
    assert calls_for_growth == calls_for_new_records > len(new)
    for before, after in zip(record_scores(first), record_scores(grown), strict=True):
        assert len(before) == len(old) and len(after) == len(old) + len(new)
        assert {key: after[key] for key in before} == before
        # Not vacuous: some perturbation changed a record's classification.
        assert any(scores["delta_classification_accuracy_score"] != 0 for scores in before.values())
