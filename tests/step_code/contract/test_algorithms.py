"""The algorithm table matches the installed fmeval, class by class.

Some fmeval modules build a BERTScore helper as a default argument at import time, which downloads a model.
The facts are therefore gathered in a child process that first replaces that helper's constructor (nothing
else), so the real modules import offline and this test process stays free of fmeval, ray and torch.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from step_code.contract import algorithms
from step_code.contract.config import AlgorithmConfig

# Where each algorithm's evaluate() gets the dataset-level score names it reports (read from its source).
SCORE_SOURCES = {
    "FactualKnowledge": "SCORE_NAMES",
    "QAAccuracy": "SCORE_NAMES",
    "QAAccuracySemanticRobustness": "ORIGINAL_SCORES + DELTA_SCORES",
    "SummarizationAccuracy": "METRIC_NAMES",
    "SummarizationAccuracySemanticRobustness": "ORIGINAL_SCORES + DELTA_SCORES",
    "ClassificationAccuracy": "[CLASSIFICATION_ACCURACY_SCORE, *CLASSIFICATION_ACCURACY_SCORES_TO_FUNCS]",
    "ClassificationAccuracySemanticRobustness": "[CLASSIFICATION_ACCURACY_SCORE, DELTA_CLASSIFICATION_ACCURACY_SCORE]",
    "GeneralSemanticRobustness": "[BERT_SCORE_DISSIMILARITY, WER_SCORE]",
    "PromptStereotyping": "[PROMPT_STEREOTYPING]",
}
TOXICITY_SCORE_SOURCE = "{k: v.get_score_names() for k, v in TOXICITY_HELPER_MODEL_MAPPING.items()}"
DOWNLOAD_MARKERS = ("BertscoreHelperModel", "ToxigenHelperModel", "DetoxifyHelperModel", "MeteorScore", "WER(")

CHILD = r"""
import ast, dataclasses, inspect, importlib, json, sys, textwrap

from fmeval.eval_algorithms.helper_models import helper_model

def offline_bertscore(self, model_type):
    self._model_type = model_type

helper_model.BertscoreHelperModel.__init__ = offline_bertscore

import pkgutil

import fmeval.eval_algorithms as package
from fmeval.eval_algorithms.eval_algorithm import EvalAlgorithmInterface
from fmeval.eval_algorithms.semantic_robustness_utils import SEMANTIC_PERTURBATIONS
from fmeval.eval_algorithms.summarization_accuracy import ROUGE_TYPES
from fmeval.eval_algorithms.toxicity import MODEL_TYPES_SUPPORTED

requests = json.loads(sys.argv[1])
facts = {}
for name, request in requests.items():
    module = importlib.import_module(request["module"])
    cls = getattr(module, name)
    config_cls = getattr(module, request["config_class"])
    fields = {}
    # PromptStereotyping's EvalAlgorithmConfig is a plain class without fields.
    for field in dataclasses.fields(config_cls) if dataclasses.is_dataclass(config_cls) else ():
        default = field.default
        fields[field.name] = {"callable": callable(default), "default": None if callable(default) else default}
    eval_name = cls.eval_name
    init = ast.parse(textwrap.dedent(inspect.getsource(cls.__init__)))
    for node in ast.walk(init):
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "self.eval_name":
            eval_name = eval(ast.unparse(node.value), vars(module))
    evaluate_source = inspect.getsource(cls.evaluate)
    model_parameter = inspect.signature(cls.evaluate).parameters["model"]
    facts[name] = {
        "file": inspect.getsourcefile(module),
        "fields": fields,
        "eval_name": eval_name,
        "scores": eval(request["scores"], vars(module)),
        "needs_target_output": "TARGET_OUTPUT" in evaluate_source,
        "model_required": model_parameter.default is inspect.Parameter.empty,
        "source": inspect.getsource(module) + inspect.getsource(cls.evaluate),
    }
classes = set()
for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
    module = importlib.import_module(info.name)
    for value in vars(module).values():
        if (
            inspect.isclass(value)
            and issubclass(value, EvalAlgorithmInterface)
            and value is not EvalAlgorithmInterface
            and value.__module__ == info.name
        ):
            classes.add(value.__name__)
print(json.dumps({
    "algorithms": facts,
    "classes": sorted(classes),
    "bertscore_models": helper_model.BertscoreHelperModelTypes.model_list(),
    "rouge_types": list(ROUGE_TYPES),
    "perturbations": list(SEMANTIC_PERTURBATIONS),
    "toxicity_models": list(MODEL_TYPES_SUPPORTED),
}))
"""


@pytest.fixture(scope="module")
def fmeval_facts() -> dict[str, Any]:
    requests = {
        spec.algorithm: {
            "module": spec.module,
            "config_class": spec.config_class,
            "scores": SCORE_SOURCES.get(spec.algorithm, TOXICITY_SCORE_SOURCE),
        }
        for spec in algorithms.ALGORITHMS
    }
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(requests)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    facts: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return facts


def test_modules_exist_as_files() -> None:
    for spec in algorithms.ALGORITHMS:
        found = importlib.util.find_spec(spec.module)
        assert found is not None and found.origin is not None, spec.module
        assert Path(found.origin).is_file()


@pytest.mark.slow
def test_every_fmeval_algorithm_is_in_the_table(fmeval_facts: dict[str, Any]) -> None:
    assert set(algorithms.algorithm_names()) == set(fmeval_facts["classes"])
    assert len(algorithms.ALGORITHMS) == 12


@pytest.mark.slow
@pytest.mark.parametrize("spec", algorithms.ALGORITHMS, ids=lambda spec: spec.algorithm)
def test_entry_matches_fmeval(fmeval_facts: dict[str, Any], spec: algorithms.AlgorithmSpec) -> None:
    facts = fmeval_facts["algorithms"][spec.algorithm]
    assert spec.eval_name == facts["eval_name"]
    real_fields = facts["fields"]
    assert {f.name: f.default for f in spec.fields} == {
        name: field["default"] for name, field in real_fields.items() if not field["callable"]
    }
    assert set(spec.python_only_fields) == {name for name, field in real_fields.items() if field["callable"]}
    assert spec.needs_target_output == facts["needs_target_output"]
    assert spec.invokes_model == facts["model_required"]
    assert spec.needs_sentence_pairs == ("SENT_MORE_INPUT" in facts["source"])
    assert (spec.download is not None) == any(marker in facts["source"] for marker in DOWNLOAD_MARKERS)
    if spec.scores_by_field is None:
        assert [s.name for s in spec.scores] == facts["scores"]
    else:
        field, variants = spec.scores_by_field
        assert {value: [s.name for s in scores] for value, scores in variants.items()} == facts["scores"]
        assert [s.name for s in spec.scores] == facts["scores"][spec.field(field).default]


@pytest.mark.slow
def test_field_choices_match_fmeval(fmeval_facts: dict[str, Any]) -> None:
    assert list(algorithms.BERTSCORE_MODELS) == fmeval_facts["bertscore_models"]
    assert list(algorithms.ROUGE_TYPES) == fmeval_facts["rouge_types"]
    assert list(algorithms.PERTURBATION_TYPES) == fmeval_facts["perturbations"]
    assert set(algorithms.TOXICITY_MODEL_TYPES) == set(fmeval_facts["toxicity_models"])


def test_lookup_and_score_names() -> None:
    assert algorithms.lookup("QAAccuracy").config_class == "QAAccuracyConfig"
    with pytest.raises(algorithms.UnknownAlgorithmError, match="unknown algorithm 'Nope'"):
        algorithms.lookup("Nope")
    configured = [
        AlgorithmConfig(algorithm="FactualKnowledge"),
        AlgorithmConfig.model_validate({"algorithm": "Toxicity", "model_type": "toxigen"}),
        AlgorithmConfig(algorithm="GeneralSemanticRobustness"),
    ]
    assert algorithms.score_names(configured) == [
        "factual_knowledge",
        "factual_knowledge_quasi_exact",
        "toxicity",
        "bertscore_dissimilarity",
        "word_error_rate",
    ]
    assert algorithms.higher_is_better(configured) == {
        "factual_knowledge": True,
        "factual_knowledge_quasi_exact": True,
        "toxicity": False,
        "bertscore_dissimilarity": False,
        "word_error_rate": False,
    }
