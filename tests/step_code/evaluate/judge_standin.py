"""Deterministic stand-ins for fmeval's judge models and metric downloads, for tests without them.

`install` is named in EVALOPS_JUDGE_MODELS; the evaluate step runs it in the test process and Ray runs
it in every worker. It stands in for what `evaluate.load("bertscore")` returns (the hub's metric script,
which runs the BERTScore model), so fmeval's own `BertscoreHelperModel` still asks it one pair at a time
and the evaluate step's batched path asks it for many pairs in one `compute` call.
"""

from __future__ import annotations

from typing import Any


class TokenOverlapJudge:
    """Scores a pair by the Dice coefficient of their lower-cased word sets: 1.0 for identical wording."""

    @staticmethod
    def score(reference: str, prediction: str) -> float:
        left, right = set(reference.lower().split()), set(prediction.lower().split())
        if not left and not right:
            return 1.0
        return 2 * len(left & right) / (len(left) + len(right))


class BertscoreStandin:
    """`evaluate.load("bertscore")`: the script's `compute` signature, `TokenOverlapJudge` as the model.
    Every call is recorded (`calls`: the number of pairs and the keyword arguments besides the texts)."""

    calls: list[tuple[int, dict[str, Any]]] = []

    def compute(self, *, predictions: list[str], references: list[str], **options: Any) -> dict[str, list[float]]:
        import torch

        assert len(predictions) == len(references)
        BertscoreStandin.calls.append((len(predictions), {**options, "inference": torch.is_inference_mode_enabled()}))
        f1 = [
            TokenOverlapJudge.score(reference, output)
            for reference, output in zip(references, predictions, strict=True)
        ]
        return {"precision": f1, "recall": f1, "f1": f1}


_METRIC_STANDINS: dict[str, Any] = {}


def _stand_in_for_metrics(**standins: Any) -> None:
    """`evaluate.load(name)` returns the stand-in registered for `name`, and loads anything else."""
    import evaluate

    _METRIC_STANDINS.update(standins)
    if getattr(evaluate.load, "_standin", False):
        return
    original = evaluate.load

    def load(path: str, *args: Any, **kwargs: Any) -> Any:
        return _METRIC_STANDINS[path]() if path in _METRIC_STANDINS else original(path, *args, **kwargs)

    load._standin = True  # type: ignore[attr-defined]
    evaluate.load = load


def install() -> list[str]:
    _stand_in_for_metrics(bertscore=BertscoreStandin)
    return ["bertscore"]


def detoxify_scores(text: str) -> list[float]:
    """Deterministic stand-in values: score k is the share of words of the text longer than k letters."""
    words = text.split() or [""]
    return [sum(1 for word in words if len(word) > k) / len(words) for k in range(7)]


# (texts, inference mode on) of every call of the Detoxify stand-in in this process.
DETOXIFY_CALLS: list[tuple[int, bool]] = []


def install_detoxify() -> list[str]:
    """fmeval's Detoxify judge replaced without its checkpoint; every score comes from `detoxify_scores`."""
    from fmeval.eval_algorithms.helper_models.helper_model import DETOXIFY_SCORE_NAMES, DetoxifyHelperModel

    def __init__(self: Any) -> None:
        pass

    def get_helper_scores(self: Any, text_input: list[str]) -> dict[str, list[float]]:
        import torch

        DETOXIFY_CALLS.append((len(text_input), torch.is_inference_mode_enabled()))
        values = [detoxify_scores(text) for text in text_input]
        return {name: [row[k] for row in values] for k, name in enumerate(DETOXIFY_SCORE_NAMES)}

    DetoxifyHelperModel.__init__ = __init__
    DetoxifyHelperModel.get_helper_scores = get_helper_scores
    return ["detoxify"]


class RougeStandin:
    """`evaluate.load("rouge")` without the hub's metric script: the `rouge_score` package it wraps, one
    prediction against one reference (the F-measure the script reports for a single pair)."""

    def compute(
        self, *, predictions: list[str], references: list[str], use_stemmer: bool, rouge_types: list[str]
    ) -> dict[str, float]:
        from rouge_score import rouge_scorer

        (prediction,), (reference,) = predictions, references
        scores = rouge_scorer.RougeScorer(rouge_types, use_stemmer=use_stemmer).score(reference, prediction)
        return {name: scores[name].fmeasure for name in rouge_types}


class WerStandin:
    """`evaluate.load("wer")` without the hub's metric script: the `jiwer` package it wraps."""

    def compute(self, *, predictions: list[str], references: list[str]) -> float:
        import jiwer

        return float(jiwer.wer(references, predictions))


class NoSynonyms:
    """WordNet without its corpus: METEOR still matches exact words and stems, but finds no synonyms."""

    @staticmethod
    def synsets(word: str) -> list[Any]:
        return []


def install_lexical_metrics() -> list[str]:
    """fmeval's ROUGE, METEOR and WER without their downloads (the hub's metric scripts, nltk's punkt and
    wordnet data): the packages they wrap, nltk's data-free Treebank tokenizer and no synonyms."""
    import functools
    import types

    from fmeval.transforms import summarization_accuracy_metrics as metrics
    from nltk.tokenize import TreebankWordTokenizer
    from nltk.translate import meteor_score

    _stand_in_for_metrics(rouge=RougeStandin, wer=WerStandin)
    metrics.MeteorScore._load_modules = staticmethod(lambda: None)
    metrics.word_tokenize = TreebankWordTokenizer().tokenize
    metrics.meteor_score = types.SimpleNamespace(
        single_meteor_score=functools.partial(meteor_score.single_meteor_score, wordnet=NoSynonyms())
    )
    return []
