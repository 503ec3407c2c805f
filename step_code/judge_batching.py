"""fmeval's judge models fed a batch of texts per forward pass instead of one.

fmeval's BertScore transform asks its helper for one (reference, output) pair at a time, so every pair
is one `bertscore.compute` call: one forward pass of a DeBERTa-xlarge per pair, the worst case for a
GPU and slow on a CPU. ToxiGen's helper calls its transformers pipeline with a list and no batch size,
which the pipeline then runs one text at a time. Detoxify is batched by fmeval already (64 texts).

Here, before a BertScore transform runs over a batch of records, every pair it will ask for is scored
in one `compute` call of the same metric with `batch_size` (bert_score embeds them in batches of that
size), and the transform then runs as it always does, its helper answering from that table; ToxiGen's
pipeline is called with `batch_size`; toxicity transforms get their batch in chunks of that size. All of
it runs under `torch.inference_mode()`, which keeps no autograd graph (fmeval's helpers run with
gradients on). The scores are the judges' own: a batch only pads shorter texts, which the attention
mask hides (measured in `benchmarks/judge_bench.py`).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from step_code.contract.compute import DEFAULT_JUDGE_BATCH_SIZES

Pair = tuple[str, str]
# Importing it loads torch and the BERTScore metric, so it is looked up only once something has.
_METRICS_MODULE = "fmeval.transforms.summarization_accuracy_metrics"


@dataclass(frozen=True)
class JudgeSettings:
    """How the judge models run: texts per forward pass, and the device (`judge_device.judge_device`)."""

    batch_size: int = DEFAULT_JUDGE_BATCH_SIZES["cpu"]
    device: str = "cpu"

    @classmethod
    def on(cls, device: str, batch_size: int | None) -> JudgeSettings:
        """The configured batch size, else the device's default."""
        return cls(batch_size or DEFAULT_JUDGE_BATCH_SIZES[device], device)


DEFAULT_JUDGES = JudgeSettings()


def is_bertscore(transform: Any) -> bool:
    metrics = sys.modules.get(_METRICS_MODULE)
    if metrics is None:
        return False
    from fmeval.eval_algorithms.helper_models.helper_model import BertscoreHelperModel

    # A Ray actor handle (fmeval's evaluate()) is left alone.
    return isinstance(transform, metrics.BertScore) and isinstance(transform.bertscore_model, BertscoreHelperModel)


def bertscore_pairs(transform: Any, records: Iterable[Mapping[str, Any]]) -> list[Pair]:
    """The (reference, output) pairs the BertScore transform will ask its helper for, in its own order
    (`SummarizationAccuracyMetric.__call__`)."""
    pairs: list[Pair] = []
    for record in records:
        if transform.target_output_keys:
            targets = [record[key] for key in transform.target_output_keys]
        else:
            targets = record[transform.target_output_keys_provider]
        for key in transform.model_output_keys:
            pairs.extend((target, record[key]) for target in targets)
    return pairs


def bertscore_table(helper: Any, pairs: Sequence[Pair], *, batch_size: int, device: str) -> dict[Pair, float]:
    """The F1 of every distinct pair from one call of the helper's own metric, as its
    `get_helper_scores` reads it for a single pair."""
    distinct = list(dict.fromkeys(pairs))
    if not distinct:
        return {}
    arguments: dict[str, Any] = {
        "predictions": [output for _, output in distinct],
        "references": [reference for reference, _ in distinct],
        "model_type": helper._model_type,
        "batch_size": batch_size,
    }
    if device != "cpu":
        arguments["device"] = device
    with inference():
        result = helper._bertscore.compute(**arguments)
    return {pair: float(value) for pair, value in zip(distinct, result["f1"], strict=True)}


@functools.cache
def _answered_class() -> type:
    """A BertscoreHelperModel (fmeval's transform checks the type) answering the pairs scored in advance and
    any other pair as the helper it stands for would; built once, on first use, after fmeval is imported."""
    from fmeval.eval_algorithms.helper_models.helper_model import BertscoreHelperModel

    class AnsweredBertscore(BertscoreHelperModel):
        def __init__(self, helper: Any, table: Mapping[Pair, float]) -> None:
            self._model_type = helper._model_type
            self._helper = helper
            self._table = table

        def get_helper_scores(self, target_output: str, model_output: str) -> float:
            score = self._table.get((target_output, model_output))
            return float(self._helper.get_helper_scores(target_output, model_output)) if score is None else score

    return AnsweredBertscore


@contextlib.contextmanager
def batched_bertscore(
    transform: Any, records: Iterable[Mapping[str, Any]], *, batch_size: int, device: str
) -> Iterator[None]:
    """While the block runs, `transform` answers every pair of `records` from one batched compute."""
    helper = transform.bertscore_model
    table = bertscore_table(helper, bertscore_pairs(transform, records), batch_size=batch_size, device=device)
    transform.bertscore_model = _answered_class()(helper, table)
    try:
        yield
    finally:
        transform.bertscore_model = helper


class _BatchedPipeline:
    """A transformers pipeline called with `batch_size` (fmeval calls ToxiGen's without one)."""

    def __init__(self, pipeline: Any, batch_size: int) -> None:
        self.pipeline = pipeline
        self.batch_size = batch_size

    def __call__(self, texts: list[str]) -> Any:
        return self.pipeline(texts, batch_size=self.batch_size)


def batch_toxicity_helper(helper: Any, batch_size: int) -> None:
    """Give ToxiGen's pipeline a batch size; Detoxify's helper already scores its whole input at once."""
    from fmeval.eval_algorithms.helper_models.helper_model import ToxigenHelperModel

    if not isinstance(helper, ToxigenHelperModel):
        return
    pipeline = helper._model.pipeline if isinstance(helper._model, _BatchedPipeline) else helper._model
    helper._model = _BatchedPipeline(pipeline, batch_size)


def chunks(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


@contextlib.contextmanager
def inference() -> Iterator[None]:
    """No autograd graph while a judge runs (torch is loaded by then: fmeval's helpers import it)."""
    import torch

    with torch.inference_mode():
        yield
