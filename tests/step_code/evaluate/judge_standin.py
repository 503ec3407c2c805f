"""A tiny deterministic stand-in for fmeval's BERTScore judge model, for tests without the real model.

`install` is named in EVALOPS_JUDGE_MODELS; the evaluate step runs it in the test process and Ray runs
it in every worker, so fmeval's QAAccuracy computes its real word-overlap scores plus this judge score.
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


def install() -> list[str]:
    from fmeval.eval_algorithms.helper_models.helper_model import BertscoreHelperModel

    def get_helper_scores(self: Any, target_output: str, model_output: str) -> float:
        return TokenOverlapJudge.score(target_output, model_output)

    BertscoreHelperModel.get_helper_scores = get_helper_scores
    return ["bertscore"]


def detoxify_scores(text: str) -> list[float]:
    """Deterministic stand-in values: score k is the share of words of the text longer than k letters."""
    words = text.split() or [""]
    return [sum(1 for word in words if len(word) > k) / len(words) for k in range(7)]


def install_detoxify() -> list[str]:
    """fmeval's Detoxify judge replaced without its checkpoint; every score comes from `detoxify_scores`."""
    from fmeval.eval_algorithms.helper_models.helper_model import DETOXIFY_SCORE_NAMES, DetoxifyHelperModel

    def __init__(self: Any) -> None:
        pass

    def get_helper_scores(self: Any, text_input: list[str]) -> dict[str, list[float]]:
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

    import evaluate
    from fmeval.transforms import summarization_accuracy_metrics as metrics
    from nltk.tokenize import TreebankWordTokenizer
    from nltk.translate import meteor_score

    if not getattr(evaluate.load, "_standin", False):
        original = evaluate.load
        standins = {"rouge": RougeStandin, "wer": WerStandin}

        def load(path: str, *args: Any, **kwargs: Any) -> Any:
            return standins[path]() if path in standins else original(path, *args, **kwargs)

        load._standin = True  # type: ignore[attr-defined]
        evaluate.load = load
    metrics.MeteorScore._load_modules = staticmethod(lambda: None)
    metrics.word_tokenize = TreebankWordTokenizer().tokenize
    metrics.meteor_score = types.SimpleNamespace(
        single_meteor_score=functools.partial(meteor_score.single_meteor_score, wordnet=NoSynonyms())
    )
    return []
