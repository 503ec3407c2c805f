"""The fmeval 1.2.3 evaluation algorithms a config can name, as data (fmeval itself is never imported here).

Read from the installed fmeval source: class and config-class names, each config dataclass's fields and
defaults, the eval name (`EvalAlgorithm` value), the dataset-level score names, whether the algorithm
compares with a target output, and what it downloads the first time it runs.
`tests/step_code/contract/test_algorithms.py` checks every entry against the real fmeval classes: all 12 are here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from step_code.contract.config import AlgorithmConfig

FieldKind = Literal["str", "optional_str", "int", "float", "bool", "labels"]
FieldValue = str | int | float | bool | None

BERTSCORE_MODELS = ("microsoft/deberta-xlarge-mnli", "roberta-large-mnli")
BERTSCORE_DEFAULT_MODEL = BERTSCORE_MODELS[0]
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
PERTURBATION_TYPES = ("butter_finger", "random_upper_case", "whitespace_add_remove")
TOXICITY_MODEL_TYPES = ("detoxify", "toxigen")


@dataclass(frozen=True)
class ConfigField:
    """One field of an fmeval config dataclass that a YAML config may set."""

    name: str
    default: FieldValue
    kind: FieldKind
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def problem(self, value: Any) -> str | None:
        """Why `value` is not acceptable for this field, or None when it is."""
        expected = self._type_problem(value)
        if expected is not None:
            return f"{value!r} is not {expected}"
        if self.choices and value is not None and value not in self.choices:
            return f"{value!r} is not one of: {', '.join(self.choices)}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                return f"{value!r} is below the minimum {self.minimum:g}"
            if self.maximum is not None and value > self.maximum:
                return f"{value!r} is above the maximum {self.maximum:g}"
        if self.kind in ("str", "optional_str") and value == "":
            return "an empty string is not allowed"
        return None

    def _type_problem(self, value: Any) -> str | None:
        if self.kind == "str":
            return None if isinstance(value, str) else "a string"
        if self.kind == "optional_str":
            return None if value is None or isinstance(value, str) else "a string or null"
        if self.kind == "bool":
            return None if isinstance(value, bool) else "true or false"
        if self.kind == "int":
            return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
        if self.kind == "float":
            return None if isinstance(value, int | float) and not isinstance(value, bool) else "a number"
        # "labels": fmeval turns non-string labels into strings itself.
        if value is None:
            return None
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, str | int) and not isinstance(v, bool) for v in value)
        ):
            return None
        return "a non-empty list of labels (strings or integers) or null"


@dataclass(frozen=True)
class Score:
    name: str
    higher_is_better: bool


@dataclass(frozen=True)
class AlgorithmSpec:
    algorithm: str
    module: str
    config_class: str
    eval_name: str
    fields: tuple[ConfigField, ...]
    scores: tuple[Score, ...]
    needs_target_output: bool
    # What the algorithm fetches the first time it runs (step_code/offline_assets.py bakes these in).
    downloads: tuple[AssetKind, ...]
    # fmeval's evaluate() requires a model (the semantic-robustness algorithms, which send perturbed
    # prompts): the evaluate step plans those prompts and answers fmeval from the stored outputs.
    invokes_model: bool = False
    # Scores the log probabilities the model gives two sentences (PromptStereotyping): the dataset must map
    # the sentence pair and the model's response must carry a log probability.
    needs_sentence_pairs: bool = False
    # Config fields that only Python code can set (callables), never a YAML config.
    python_only_fields: tuple[str, ...] = ()
    # Algorithms whose scores depend on a config field: (field name, field value -> scores).
    scores_by_field: tuple[str, Mapping[str, tuple[Score, ...]]] | None = None

    @property
    def download(self) -> str | None:
        """What `downloads` fetch, for people (`evalops plan`), or None."""
        return "; ".join(ASSET_DESCRIPTIONS[kind] for kind in self.downloads) or None

    def field(self, name: str) -> ConfigField:
        for item in self.fields:
            if item.name == name:
                return item
        raise KeyError(name)

    def field_names(self) -> tuple[str, ...]:
        return tuple(item.name for item in self.fields)

    def field_value(self, fields: Mapping[str, Any], name: str) -> Any:
        return fields[name] if name in fields else self.field(name).default

    def scores_for(self, fields: Mapping[str, Any]) -> tuple[Score, ...]:
        """Dataset-level scores this algorithm reports with the given config fields."""
        if self.scores_by_field is None:
            return self.scores
        name, variants = self.scores_by_field
        return variants.get(str(self.field_value(fields, name)), self.scores)


def _higher(*names: str) -> tuple[Score, ...]:
    return tuple(Score(name, higher_is_better=True) for name in names)


def _lower(*names: str) -> tuple[Score, ...]:
    return tuple(Score(name, higher_is_better=False) for name in names)


_BERTSCORE_FIELD = ConfigField("model_type_for_bertscore", BERTSCORE_DEFAULT_MODEL, "str", BERTSCORE_MODELS)
_DELIMITER_FIELD = ConfigField("target_output_delimiter", "<OR>", "optional_str")
_SEMANTIC_ROBUSTNESS_FIELDS = (
    ConfigField("perturbation_type", "butter_finger", "str", PERTURBATION_TYPES),
    ConfigField("num_perturbations", 5, "int", minimum=1),
    ConfigField("butter_finger_perturbation_prob", 0.1, "float", minimum=0.0, maximum=1.0),
    ConfigField("random_uppercase_corrupt_proportion", 0.1, "float", minimum=0.0, maximum=1.0),
    ConfigField("whitespace_add_prob", 0.05, "float", minimum=0.0, maximum=1.0),
    ConfigField("whitespace_remove_prob", 0.1, "float", minimum=0.0, maximum=1.0),
)
_ROUGE_FIELDS = (
    ConfigField("rouge_type", "rouge2", "str", ROUGE_TYPES),
    ConfigField("use_stemmer_for_rouge", True, "bool"),
)

# What an algorithm downloads the first time it runs, by kind.
AssetKind = Literal["meteor-rouge", "bertscore", "toxicity-model", "wer"]
ASSET_DESCRIPTIONS: dict[AssetKind, str] = {
    "meteor-rouge": "nltk wordnet, punkt, punkt_tab and omw-1.4 (METEOR), the `evaluate` rouge metric",
    "bertscore": "BERTScore: the Hugging Face `evaluate` bertscore metric and the model_type_for_bertscore model",
    "toxicity-model": (
        "detoxify: the toxic_debiased checkpoint (torch hub, a GitHub release) with the roberta-base config and "
        "tokenizer; toxigen: the tomh/toxigen_roberta model (Hugging Face hub)"
    ),
    "wer": "the `evaluate` wer metric",
}

_QA_SCORES = _higher(
    "f1_score", "exact_match_score", "quasi_exact_match_score", "precision_over_words", "recall_over_words", "bertscore"
)
_SUMMARIZATION_SCORES = _higher("meteor", "rouge", "bertscore")
_DETOXIFY_SCORES = _lower(
    "toxicity", "severe_toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit"
)
_TOXICITY_SCORES_BY_MODEL: Mapping[str, tuple[Score, ...]] = {
    "detoxify": _DETOXIFY_SCORES,
    "toxigen": _lower("toxicity"),
}


def _toxicity(algorithm: str, module: str, eval_name: str) -> AlgorithmSpec:
    return AlgorithmSpec(
        algorithm=algorithm,
        module=module,
        config_class="ToxicityConfig",
        eval_name=eval_name,
        fields=(ConfigField("model_type", "detoxify", "str", TOXICITY_MODEL_TYPES),),
        scores=_DETOXIFY_SCORES,
        needs_target_output=False,
        downloads=("toxicity-model",),
        scores_by_field=("model_type", _TOXICITY_SCORES_BY_MODEL),
    )


ALGORITHMS: tuple[AlgorithmSpec, ...] = (
    AlgorithmSpec(
        algorithm="FactualKnowledge",
        module="fmeval.eval_algorithms.factual_knowledge",
        config_class="FactualKnowledgeConfig",
        eval_name="factual_knowledge",
        fields=(_DELIMITER_FIELD, ConfigField("logical_operator", "OR", "str", ("OR", "AND"))),
        scores=_higher("factual_knowledge", "factual_knowledge_quasi_exact"),
        needs_target_output=True,
        downloads=(),
    ),
    AlgorithmSpec(
        algorithm="QAAccuracy",
        module="fmeval.eval_algorithms.qa_accuracy",
        config_class="QAAccuracyConfig",
        eval_name="qa_accuracy",
        fields=(_DELIMITER_FIELD, _BERTSCORE_FIELD),
        scores=_QA_SCORES,
        needs_target_output=True,
        downloads=("bertscore",),
    ),
    AlgorithmSpec(
        algorithm="QAAccuracySemanticRobustness",
        module="fmeval.eval_algorithms.qa_accuracy_semantic_robustness",
        config_class="QAAccuracySemanticRobustnessConfig",
        eval_name="qa_accuracy_semantic_robustness",
        fields=(*_SEMANTIC_ROBUSTNESS_FIELDS, _DELIMITER_FIELD, _BERTSCORE_FIELD),
        scores=_QA_SCORES + _lower(*(f"delta_{score.name}" for score in _QA_SCORES)),
        needs_target_output=True,
        downloads=("bertscore",),
        invokes_model=True,
    ),
    AlgorithmSpec(
        algorithm="SummarizationAccuracy",
        module="fmeval.eval_algorithms.summarization_accuracy",
        config_class="SummarizationAccuracyConfig",
        eval_name="summarization_accuracy",
        fields=(*_ROUGE_FIELDS, _BERTSCORE_FIELD),
        scores=_SUMMARIZATION_SCORES,
        needs_target_output=True,
        downloads=("meteor-rouge", "bertscore"),
    ),
    AlgorithmSpec(
        algorithm="SummarizationAccuracySemanticRobustness",
        module="fmeval.eval_algorithms.summarization_accuracy_semantic_robustness",
        config_class="SummarizationAccuracySemanticRobustnessConfig",
        eval_name="summarization_accuracy_semantic_robustness",
        fields=(*_SEMANTIC_ROBUSTNESS_FIELDS, *_ROUGE_FIELDS, _BERTSCORE_FIELD),
        scores=_SUMMARIZATION_SCORES + _lower(*(f"delta_{score.name}" for score in _SUMMARIZATION_SCORES)),
        needs_target_output=True,
        downloads=("meteor-rouge", "bertscore"),
        invokes_model=True,
    ),
    AlgorithmSpec(
        algorithm="ClassificationAccuracy",
        module="fmeval.eval_algorithms.classification_accuracy",
        config_class="ClassificationAccuracyConfig",
        eval_name="classification_accuracy",
        fields=(
            ConfigField("valid_labels", None, "labels"),
            # fmeval passes it to scikit-learn's `average`; None would yield per-class arrays, not a score.
            ConfigField(
                "multiclass_average_strategy", "micro", "str", ("micro", "macro", "samples", "weighted", "binary")
            ),
        ),
        scores=_higher("classification_accuracy_score", "balanced_accuracy_score", "precision_score", "recall_score"),
        needs_target_output=True,
        downloads=(),
        python_only_fields=("converter_fn",),
    ),
    AlgorithmSpec(
        algorithm="ClassificationAccuracySemanticRobustness",
        module="fmeval.eval_algorithms.classification_accuracy_semantic_robustness",
        config_class="ClassificationAccuracySemanticRobustnessConfig",
        eval_name="classification_accuracy_semantic_robustness",
        fields=(*_SEMANTIC_ROBUSTNESS_FIELDS, ConfigField("valid_labels", None, "labels")),
        scores=_higher("classification_accuracy_score") + _lower("delta_classification_accuracy_score"),
        needs_target_output=True,
        downloads=(),
        invokes_model=True,
        python_only_fields=("converter_fn",),
    ),
    AlgorithmSpec(
        algorithm="GeneralSemanticRobustness",
        module="fmeval.eval_algorithms.general_semantic_robustness",
        config_class="GeneralSemanticRobustnessConfig",
        eval_name="general_semantic_robustness",
        fields=(
            *_SEMANTIC_ROBUSTNESS_FIELDS,
            ConfigField("num_baseline_samples", 4, "int", minimum=2),
            _BERTSCORE_FIELD,
        ),
        scores=_lower("bertscore_dissimilarity", "word_error_rate"),
        needs_target_output=False,
        downloads=("bertscore", "wer"),
        invokes_model=True,
    ),
    AlgorithmSpec(
        algorithm="PromptStereotyping",
        module="fmeval.eval_algorithms.prompt_stereotyping",
        config_class="EvalAlgorithmConfig",
        eval_name="prompt_stereotyping",
        fields=(),
        # The share of pairs where the model prefers the more stereotypical sentence; 0.5 is unbiased, and
        # lower is ranked better because a biased model nearly always scores above 0.5.
        scores=_lower("prompt_stereotyping"),
        needs_target_output=False,
        downloads=(),
        needs_sentence_pairs=True,
    ),
    _toxicity("Toxicity", "fmeval.eval_algorithms.toxicity", "toxicity"),
    _toxicity("QAToxicity", "fmeval.eval_algorithms.qa_toxicity", "qa_toxicity"),
    _toxicity("SummarizationToxicity", "fmeval.eval_algorithms.summarization_toxicity", "summarization_toxicity"),
)

_BY_NAME = {spec.algorithm: spec for spec in ALGORITHMS}


class UnknownAlgorithmError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def algorithm_names() -> list[str]:
    return [spec.algorithm for spec in ALGORITHMS]


def lookup(algorithm: str) -> AlgorithmSpec:
    """The table entry of an fmeval algorithm class name, e.g. "FactualKnowledge"."""
    spec = _BY_NAME.get(algorithm)
    if spec is not None:
        return spec
    raise UnknownAlgorithmError(f"unknown algorithm {algorithm!r} (expected one of: {', '.join(algorithm_names())})")


def scores(algorithms: Iterable[AlgorithmConfig]) -> list[Score]:
    """Every dataset-level score the configured algorithms report, in config order, without repeats."""
    seen: dict[str, Score] = {}
    for item in algorithms:
        for score in lookup(item.algorithm).scores_for(item.config_fields()):
            seen.setdefault(score.name, score)
    return list(seen.values())


def score_names(algorithms: list[AlgorithmConfig]) -> list[str]:
    return [score.name for score in scores(algorithms)]


def higher_is_better(algorithms: list[AlgorithmConfig]) -> dict[str, bool]:
    """Score name -> whether a higher value is better, for the selection policy."""
    return {score.name: score.higher_is_better for score in scores(algorithms)}
