"""Our in-process scores equal fmeval's own, algorithm by algorithm, on the same model outputs.

- Algorithms that score stored outputs: fmeval's `evaluate(model=None)` (Ray) over the outputs our step
  stored gives the same dataset scores, category scores and per-record scores.
- PromptStereotyping: fmeval's `evaluate(model=...)` with a runner on the same local model server.
- Semantic robustness: fmeval's `evaluate()` is not deterministic there. Its perturbation transforms draw
  from one random generator per transform instance, and `evaluate()` builds one instance per Ray actor
  after `get_dataset` has shuffled the records (pandas `sample(random_state=SEED)`) and split them into
  blocks, so which perturbation a record gets depends on the shuffle and on how Ray hands blocks to
  actors. The reference is therefore fmeval's per-record path (`TransformPipeline.execute_record` with
  the algorithm's own `_build_pipeline` and a runner on the model server), its perturbation transform
  given each record's own generator before the record (`perturbation_seeds`), as our step gives it.

Judge models and metric downloads are replaced by the stand-ins of `judge_standin`, installed through
the judge-hook seam (EVALOPS_JUDGE_MODELS) in this process and in every Ray worker, so both sides score
with the same metric code: BERTScore and Detoxify by deterministic stand-ins; ROUGE and WER by the
`rouge_score` and `jiwer` packages that fmeval's `evaluate.load("rouge")`/`("wer")` metric scripts wrap
(the scripts come from the hub); METEOR by nltk's own `single_meteor_score` with nltk's data-free
Treebank tokenizer instead of `word_tokenize` (punkt data) and no WordNet synonyms (wordnet data). What
these tests prove is that our transforms, records and aggregation are fmeval's; that the real downloads
score as fmeval documents is fmeval's own concern.

One Ray session serves the whole module (one start-up), and fmeval's `evaluate()` runs once per algorithm.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from step_code import fmeval_runtime, offline_assets
from step_code.contract.config import Config
from step_code.evaluate_step import main
from step_code.perturbation_seeds import RecordSeededPerturbation
from tests.step_code.evaluate.conftest import DETOXIFY_STANDIN_HOOK, STANDIN_HOOK, EvaluateRun, make_run
from tests.support.model_server import ModelServer

pytestmark = pytest.mark.slow

LEXICAL_STANDIN_HOOK = "tests.step_code.evaluate.judge_standin:install_lexical_metrics"
# What the lexical stand-ins replace: the step's check for these downloads must not refuse the algorithms.
REPLACED_ASSETS = (offline_assets.ROUGE_ASSET, offline_assets.WER_ASSET, offline_assets.NLTK_ASSET)


@pytest.fixture(scope="module", autouse=True)
def standins_and_ray() -> Any:
    """Every stand-in hook set once for the module, and one Ray session for all of fmeval's `evaluate()` runs."""
    original = offline_assets.missing_assets

    def missing_assets(algorithm: str, fields: Any, provided_judges: frozenset[str]) -> list[Any]:
        return [asset for asset in original(algorithm, fields, provided_judges) if asset not in REPLACED_ASSETS]

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(fmeval_runtime.JUDGE_MODELS_ENV, f"{STANDIN_HOOK},{DETOXIFY_STANDIN_HOOK},{LEXICAL_STANDIN_HOOK}")
        patch.setattr(offline_assets, "missing_assets", missing_assets)
        fmeval_runtime.install_judge_models()
        with fmeval_runtime.ray_session():
            yield


LABELS = ("yes", "no", "maybe")
TEMPLATE = "Answer briefly: $model_input"
TOLERANCE = 1e-12


def catalog_rows(count: int) -> list[dict[str, str]]:
    return [
        {
            "question": f"Is {i} a number worth asking about?",
            "answer": LABELS[i % 3],
            "topic": "even" if i % 2 == 0 else "odd",
            "more": f"People from group {i} are all bad drivers.",
            "less": f"People from place {i} are sometimes bad drivers, like everyone.",
        }
        for i in range(count)
    ]


def answer(prompt: str) -> str:
    """A deterministic answer; perturbed prompts get other answers than their originals, some of them."""
    size = len(prompt)
    return ["yes it is", "no", "I would say maybe", "hard to tell really"][size % 4] + " " * (size % 2)


class ServerRunner:
    """fmeval's view of the model server: a ModelRunner posting TGI requests (picklable for Ray actors)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def predict(self, prompt: str) -> tuple[str, float]:
        body = json.dumps({"inputs": prompt, "parameters": {"details": True}}).encode("utf-8")
        request = urllib.request.Request(f"{self.url}/generate", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            generation = json.loads(response.read())
        return generation["generated_text"], sum(token["logprob"] for token in generation["details"]["tokens"])


def fmeval_runner(url: str) -> Any:
    from fmeval.model_runners.model_runner import ModelRunner

    class _Runner(ServerRunner, ModelRunner):
        pass

    return _Runner(url)


def build_run(root: Path, url: str, algorithms: list[dict[str, Any]], *, rows: int) -> EvaluateRun:
    catalog = root / "catalog"
    catalog.mkdir(parents=True)
    (catalog / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in catalog_rows(rows)), encoding="utf-8")
    config = Config.model_validate(
        {
            "pipeline": {"name": "equivalence"},
            "dataset": {
                "dataset_name": "pairs",
                "input_data_location": "pairs.jsonl",
                "model_input_key": "question",
                "target_output_key": "answer",
                "category_key": "topic",
                "sent_more_input_location": "more",
                "sent_less_input_location": "less",
            },
            "models": [
                {
                    "name": "candidate",
                    "model_provider": "http",
                    "endpoint_url": f"{url}/generate",
                    "evaluation_config": {
                        "prompt_template": TEMPLATE,
                        "log_probability": "sum(details.tokens[*].logprob)",
                        "inference_parameters": {"details": True},
                        "max_concurrency": 4,
                    },
                }
            ],
            "model_registry": {"model_package_group_name": "equivalence"},
            "algorithms": algorithms,
        }
    )
    return make_run(root / "run", config, catalog)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def scores_of(row: dict[str, Any]) -> dict[str, Any]:
    return {score["name"]: score.get("value") for score in row["scores"]}


def eval_output(output: Path, eval_name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((output / f"algorithms/{eval_name}.json").read_text(encoding="utf-8"))
    return payload


def dataset_scores(payload: dict[str, Any]) -> dict[str, float]:
    return {score["name"]: score["value"] for score in payload["dataset_scores"]}


def category_scores(payload: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {
        category["name"]: {score["name"]: score["value"] for score in category["scores"]}
        for category in payload["category_scores"] or []
    }


def assert_same(ours: Any, theirs: Any) -> None:
    """Equal structure and keys; numbers equal up to summation-order rounding (Ray sums in blocks)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and set(ours) == set(theirs)
        for key in theirs:
            assert_same(ours[key], theirs[key])
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs)
        for mine, other in zip(ours, theirs, strict=True):
            assert_same(mine, other)
    elif isinstance(theirs, bool) or theirs is None:
        assert ours == theirs
    else:
        assert ours == pytest.approx(theirs, abs=TOLERANCE, rel=TOLERANCE)


def fmeval_evaluate(algorithm: Any, data_config: Any, records: int, saved: Path, model: Any = None) -> Any:
    from fmeval.eval_algorithms.save_strategy import FileSaveStrategy

    kwargs: dict[str, Any] = {"prompt_template": TEMPLATE} if model is not None else {}
    (result,) = algorithm.evaluate(
        model=model,
        dataset_config=data_config,
        num_records=records,
        save=True,
        save_strategy=FileSaveStrategy(str(saved)),
        **kwargs,
    )
    return result


def as_dicts(result: Any) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    return (
        {score.name: score.value for score in result.dataset_scores},
        {c.name: {score.name: score.value for score in c.scores} for c in result.category_scores or []},
    )


OUTPUT_ALGORITHMS: list[tuple[dict[str, Any], str, str]] = [
    ({"algorithm": "FactualKnowledge"}, "fmeval.eval_algorithms.factual_knowledge", "FactualKnowledgeConfig"),
    ({"algorithm": "QAAccuracy"}, "fmeval.eval_algorithms.qa_accuracy", "QAAccuracyConfig"),
    (
        {"algorithm": "ClassificationAccuracy"},
        "fmeval.eval_algorithms.classification_accuracy",
        "ClassificationAccuracyConfig",
    ),
    ({"algorithm": "Toxicity"}, "fmeval.eval_algorithms.toxicity", "ToxicityConfig"),
    ({"algorithm": "QAToxicity"}, "fmeval.eval_algorithms.qa_toxicity", "ToxicityConfig"),
    ({"algorithm": "SummarizationToxicity"}, "fmeval.eval_algorithms.summarization_toxicity", "ToxicityConfig"),
    (
        {"algorithm": "SummarizationAccuracy", "rouge_type": "rougeL"},
        "fmeval.eval_algorithms.summarization_accuracy",
        "SummarizationAccuracyConfig",
    ),
]


def fmeval_algorithm(entry: dict[str, Any], module: str, config_class: str) -> Any:
    import importlib

    loaded = importlib.import_module(module)
    fields = {k: v for k, v in entry.items() if k != "algorithm"}
    return getattr(loaded, entry["algorithm"])(getattr(loaded, config_class)(**fields))


def same_evaluate_as(algorithm: Any) -> str:
    """The algorithm whose `evaluate()` run serves as this one's reference. QAToxicity and
    SummarizationToxicity are Toxicity with another eval_name: the same `evaluate()`, the same helper
    model class and config; fmeval's run of Toxicity is theirs, so it runs once (each costs a Ray Data job)."""
    from fmeval.eval_algorithms.toxicity import Toxicity

    if isinstance(algorithm, Toxicity):
        # The entries of OUTPUT_ALGORITHMS configure no toxicity field: all three use the default detector.
        assert type(algorithm).evaluate is Toxicity.evaluate
        assert type(algorithm._helper_model) is type(Toxicity()._helper_model)
        return "Toxicity"
    return type(algorithm).__name__


def test_output_algorithms_equal_fmeval_evaluate(tmp_path: Path) -> None:
    from fmeval.data_loaders.data_config import DataConfig

    rows = 24
    with ModelServer(answers=answer) as server:
        run = build_run(tmp_path, server.url, [entry for entry, _, _ in OUTPUT_ALGORITHMS], rows=rows)
        assert main(run.argv("candidate")) == 0
    output = run.output_dir("candidate")
    stored = read_jsonl(output / "records.jsonl")
    assert len(stored) == rows and all(r["model_output"] for r in stored)
    outputs_file = tmp_path / "outputs.jsonl"
    outputs_file.write_text(
        "".join(
            json.dumps({k: r[k] for k in ("model_input", "target_output", "model_output", "category")}) + "\n"
            for r in stored
        ),
        encoding="utf-8",
    )
    data_config = DataConfig(
        dataset_name="pairs",
        dataset_uri=str(outputs_file),
        dataset_mime_type="application/jsonlines",
        model_input_location="model_input",
        target_output_location="target_output",
        model_output_location="model_output",
        category_location="category",
    )
    references: dict[str, tuple[Any, Path]] = {}
    for entry, module, config_class in OUTPUT_ALGORITHMS:
        algorithm = fmeval_algorithm(entry, module, config_class)
        reference = same_evaluate_as(algorithm)
        if reference not in references:
            saved = tmp_path / f"{algorithm.eval_name}-fmeval.jsonl"
            references[reference] = (fmeval_evaluate(algorithm, data_config, rows, saved), saved)
        result, saved = references[reference]
        theirs_dataset, theirs_categories = as_dicts(result)
        ours = eval_output(output, algorithm.eval_name)
        assert_same(dataset_scores(ours), theirs_dataset)
        assert set(category_scores(ours)) == {"even", "odd"}
        assert_same(category_scores(ours), theirs_categories)
        their_rows = {row["model_input"]: scores_of(row) for row in read_jsonl(saved)}
        our_rows = {row["model_input"]: scores_of(row) for row in read_jsonl(output / str(ours["output_path"]))}
        assert len(our_rows) == rows
        assert_same(our_rows, their_rows)


def test_prompt_stereotyping_equals_fmeval_evaluate_with_the_model(tmp_path: Path) -> None:
    from fmeval.data_loaders.data_config import DataConfig
    from fmeval.eval_algorithms.prompt_stereotyping import PromptStereotyping

    rows = 12
    with ModelServer(answers=answer) as server:
        run = build_run(tmp_path, server.url, [{"algorithm": "PromptStereotyping"}], rows=rows)
        assert main(run.argv("candidate")) == 0
        # Each record's own prompt and its two sentences, each sent once.
        assert server.requests_total == 3 * rows
        data_config = DataConfig(
            dataset_name="pairs",
            dataset_uri=str(run.catalog_dir / "pairs.jsonl"),
            dataset_mime_type="application/jsonlines",
            sent_more_input_location="more",
            sent_less_input_location="less",
            category_location="topic",
        )
        saved = tmp_path / "fmeval.jsonl"
        theirs = fmeval_evaluate(PromptStereotyping(), data_config, rows, saved, model=fmeval_runner(server.url))
    output = run.output_dir("candidate")
    ours = eval_output(output, "prompt_stereotyping")
    theirs_dataset, theirs_categories = as_dicts(theirs)
    assert_same(dataset_scores(ours), theirs_dataset)
    assert_same(category_scores(ours), theirs_categories)
    their_rows = {row["sent_more_input"]: scores_of(row) for row in read_jsonl(saved)}
    our_rows = {row["sent_more_input"]: scores_of(row) for row in read_jsonl(output / str(ours["output_path"]))}
    assert len(our_rows) == rows and set(next(iter(our_rows.values()))) == {"log_probability_difference"}
    assert_same(our_rows, their_rows)


ROBUSTNESS: list[dict[str, Any]] = [
    {"algorithm": "QAAccuracySemanticRobustness", "perturbation_type": "butter_finger", "num_perturbations": 3},
    {
        "algorithm": "ClassificationAccuracySemanticRobustness",
        "perturbation_type": "random_upper_case",
        "num_perturbations": 2,
    },
    {
        "algorithm": "SummarizationAccuracySemanticRobustness",
        "perturbation_type": "whitespace_add_remove",
        "num_perturbations": 2,
    },
    {"algorithm": "GeneralSemanticRobustness", "perturbation_type": "butter_finger", "num_perturbations": 2},
]
# Each algorithm's module, and what its `_build_pipeline` takes after the model and the template.
ROBUSTNESS_MODULES = {
    "QAAccuracySemanticRobustness": "fmeval.eval_algorithms.qa_accuracy_semantic_robustness",
    "ClassificationAccuracySemanticRobustness": "fmeval.eval_algorithms.classification_accuracy_semantic_robustness",
    "SummarizationAccuracySemanticRobustness": "fmeval.eval_algorithms.summarization_accuracy_semantic_robustness",
    "GeneralSemanticRobustness": "fmeval.eval_algorithms.general_semantic_robustness",
}


def per_record_reference(entry: dict[str, Any], url: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """fmeval's per-record path: the algorithm's own pipeline on each record (its perturbation transform
    reseeded for the record), the model on the server."""
    import importlib

    from fmeval.eval_algorithms.util import create_model_invocation_pipeline
    from fmeval.transforms.transform_pipeline import TransformPipeline

    name = entry["algorithm"]
    module = importlib.import_module(ROBUSTNESS_MODULES[name])
    fields = {k: v for k, v in entry.items() if k != "algorithm"}
    algorithm = getattr(module, name)(getattr(module, f"{name}Config")(**fields))
    runner = fmeval_runner(url)
    third: Any = {
        "QAAccuracySemanticRobustness": getattr(algorithm, "bertscore_model", None),
        "SummarizationAccuracySemanticRobustness": getattr(algorithm, "bertscore_model", None),
        "ClassificationAccuracySemanticRobustness": list(dict.fromkeys(r["target_output"] for r in records)),
        # The model server answers each prompt the same way every time: fmeval's deterministic path.
        "GeneralSemanticRobustness": True,
    }[name]
    pipeline = TransformPipeline(
        [create_model_invocation_pipeline(runner, TEMPLATE), algorithm._build_pipeline(runner, TEMPLATE, third)]
    )
    if hasattr(module, "DELTA_SCORES"):
        names = [*module.ORIGINAL_SCORES, *module.DELTA_SCORES]
    elif name == "GeneralSemanticRobustness":
        names = [module.BERT_SCORE_DISSIMILARITY, module.WER_SCORE]
    else:
        names = [module.CLASSIFICATION_ACCURACY_SCORE, module.DELTA_CLASSIFICATION_ACCURACY_SCORE]
    # fmeval's own transform object, the one in its pipeline, perturbs; it only gets the record's generator first.
    assert any(transform is algorithm.perturbation_transform for transform in pipeline.transforms)
    seeded = RecordSeededPerturbation(algorithm.perturbation_transform)
    out = []
    for record in records:
        seeded.reseed(record["record_id"])
        result = pipeline.execute_record(
            {"model_input": record["model_input"], "target_output": record["target_output"]}
        )
        out.append({name: result[name] for name in names} | {"category": record["category"]})
    return out


def test_robustness_algorithms_equal_fmeval_per_record_path_with_each_prompt_sent_once(
    tmp_path: Path,
) -> None:
    rows = 16
    with ModelServer(answers=answer) as server:
        run = build_run(tmp_path, server.url, ROBUSTNESS, rows=rows)
        assert main(run.argv("candidate")) == 0
        planned_prompts = {request.body["inputs"] for request in server.requests}
        calls = server.requests_total
        server.reset_counters()
        fmeval_runtime.install_judge_models()
        stored = read_jsonl(run.output_dir("candidate") / "records.jsonl")
        references = [per_record_reference(entry, server.url, stored) for entry in ROBUSTNESS]
        # fmeval's own path asks for no prompt our plan did not send.
        assert {request.body["inputs"] for request in server.requests} <= planned_prompts

    # Originals plus 3, 2, 2 and 2 perturbations per record, every distinct prompt sent once.
    assert calls == len(planned_prompts)
    assert rows < calls <= rows * (1 + 3 + 2 + 2 + 2)
    output = run.output_dir("candidate")
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert summary["model_calls"] == calls and summary["records_total"] == rows
    for entry, reference in zip(ROBUSTNESS, references, strict=True):
        result = next(a for a in summary["algorithms"] if a["algorithm"] == entry["algorithm"])
        assert result["error"] is None
        ours = read_jsonl(output / result["records_path"])
        assert [row["model_input"] for row in ours] == [r["model_input"] for r in stored]
        names = list(result["scores"])
        assert_same([scores_of(row) for row in ours], [{n: ref[n] for n in names} for ref in reference])
        for name in names:
            assert_same(result["scores"][name], sum(ref[name] for ref in reference) / rows)
            for category in ("even", "odd"):
                values = [ref[name] for ref in reference if ref["category"] == category]
                assert_same(result["category_scores"][category][name], sum(values) / len(values))


def test_an_unchanged_rerun_makes_no_model_call(tmp_path: Path) -> None:
    with ModelServer(answers=answer) as server:
        run = build_run(tmp_path, server.url, ROBUSTNESS[:1], rows=6)
        assert main(run.argv("candidate")) == 0
        first = server.requests_total
        server.reset_counters()
        assert main(run.argv("candidate")) == 0
        assert (first, server.requests_total) == (first, 0)
    summary = json.loads((run.output_dir("candidate") / "summary.json").read_text(encoding="utf-8"))
    assert summary["model_calls"] == 0 and summary["algorithms"][0]["error"] is None
