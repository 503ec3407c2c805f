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
