"""Judge-model throughput on the CPU: fmeval's way of calling its judge models against ours, batched.

fmeval scores with three judge models whose weights cannot be downloaded here. Each is replaced by a
stand-in of the real architecture and size with random weights, built offline in a temp dir: a byte-level
BPE tokenizer trained on synthetic text; Detoxify, a RobertaForSequenceClassification of roberta-base
dims with one label per Detoxify score, set into fmeval's DetoxifyHelperModel; ToxiGen, one of
roberta-large dims with 2 labels, loaded by the `text-classification` pipeline; BERTScore, a DeBERTa of
deberta-xlarge dims that `bert_score` scores with (at the layer it uses for fmeval's default model)
behind a stand-in for the hub's metric script. Only the weights differ from the real judges: the
arithmetic per record is theirs.

Per judge, records/s of
(a) fmeval's path as its `evaluate()` runs it, in one process: QAAccuracy's transforms record by record,
    so BERTScore is one pair per `compute` call; the toxicity detectors through `ToxicityScores` on
    batches of 64, where ToxiGen's pipeline gets the batch as a list without a batch size and so runs
    text by text;
(b) ours: `record_scoring.AlgorithmScorer` with `judge_batch_size` = N, fed batches of
    `record_scoring.BATCH_SIZE` records as the evaluate step feeds it;
and the largest absolute difference of a record's judge score between (a) and (b): more than
`MAX_DIFFERENCE` is a failure (padding in a batch moves the floats by about 1e-6). Model outputs are 20
to 80 words, references 5 to 30. The machine has no GPU, so no GPU figure is measured.

Then what a judge algorithm adds, at the best measured CPU rate, to the shard benchmark's projection
(1M prompts per model on `shard_bench.PROJECTED_SHARDS` evaluate instances).
"""

from __future__ import annotations

import gc
import io
import json
import math
import multiprocessing
import random
import resource
import tempfile
import threading
import time
from bisect import bisect
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import accumulate
from pathlib import Path
from typing import Any

from benchmarks.common import environment, print_table
from benchmarks.shard_bench import EVALUATE_INSTANCE, PROJECTED_PROMPTS, PROJECTED_SHARDS

JUDGES = ("detoxify", "toxigen", "bertscore")
# Padding a batch changes a score by about 1e-6; more than this is a different computation.
MAX_DIFFERENCE = 1e-4
OUTPUT_WORDS = (20, 80)
REFERENCE_WORDS = (5, 30)
QUESTION_WORDS = (6, 16)
# The vocabulary of RoBERTa and of DeBERTa (v1): the embedding matrices are full size even though the
# stand-in tokenizer uses only the first ids.
REAL_VOCAB = 50_265
# 3,000 merges cut the lexicon into about 1.3 tokens per word, as RoBERTa's BPE cuts English prose.
BPE_VOCAB = 3_000
LEXICON_SEED = 5
BPE_TRAINING_TEXTS = 3_000
MAX_TOKENS = 512
ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
DEBERTA_SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]")
SYLLABLES = (
    *("ka", "lo", "mi", "ten", "sor", "vel", "ar", "qui", "dan", "pre", "tor", "ul", "ex", "ri", "mon", "sa"),
    *("ber", "ly", "gen", "cha", "fi", "nu", "ost", "wer", "in", "e", "a", "th", "ing", "pol", "ro", "st"),
)
# Detoxify's seven scores (fmeval's DETOXIFY_SCORE_NAMES) and ToxiGen's two classes.
JUDGE_LABELS = {"detoxify": 7, "toxigen": 2}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1"}


@dataclass(frozen=True)
class Dims:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    # None: the stand-in tokenizer's own size (smoke runs).
    vocab: int | None = REAL_VOCAB


@dataclass(frozen=True)
class JudgeSizes:
    dims: Mapping[str, Dims]
    records: Mapping[str, int]
    batch_sizes: Mapping[str, tuple[int, ...]]

    def with_records(self, records: int | None) -> JudgeSizes:
        return self if records is None else replace(self, records=dict.fromkeys(JUDGES, records))


# roberta-base (Detoxify's "unbiased" model), roberta-large (tomh/toxigen_roberta), microsoft/deberta-xlarge-mnli.
FULL = JudgeSizes(
    dims={
        "detoxify": Dims(hidden=768, layers=12, heads=12, intermediate=3072),
        "toxigen": Dims(hidden=1024, layers=24, heads=16, intermediate=4096),
        "bertscore": Dims(hidden=1024, layers=48, heads=16, intermediate=4096),
    },
    # On 2 shared cores fmeval's path took about 0.2 s per record with Detoxify, 1 s with ToxiGen and 3.5 s
    # with BERTScore: these counts keep the whole run (4 or 5 paths per judge) near 10 minutes.
    records={"detoxify": 96, "toxigen": 48, "bertscore": 32},
    batch_sizes={"detoxify": (1, 16, 64), "toxigen": (1, 16, 64), "bertscore": (1, 16, 64, 256)},
)
# Tiny widths, the real depths (bert_score takes layer 40 of fmeval's default model).
SMOKE = JudgeSizes(
    dims={
        judge: Dims(hidden=32, layers=dims.layers, heads=2, intermediate=64, vocab=None)
        for judge, dims in FULL.dims.items()
    },
    records=dict.fromkeys(JUDGES, 10),
    batch_sizes=dict.fromkeys(JUDGES, (1, 4)),
)


@dataclass(frozen=True)
class Pair:
    question: str
    output: str
    reference: str


def _lexicon(rng: random.Random, size: int = 4_000) -> list[str]:
    words: dict[str, None] = {}
    while len(words) < size:
        words["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4)))] = None
    return list(words)


class TextMaker:
    """Synthetic English-like text: words of a made-up lexicon drawn with Zipf's law, in sentences."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        # One lexicon for every seed: the tokenizer is trained on the texts of another seed.
        self._words = _lexicon(random.Random(LEXICON_SEED))
        self._cumulative = list(accumulate(1.0 / (rank + 1) for rank in range(len(self._words))))

    def text(self, low: int, high: int) -> str:
        count = self._rng.randint(low, high)
        total = self._cumulative[-1]
        words = [self._words[bisect(self._cumulative, self._rng.random() * total)] for _ in range(count)]
        sentences, start = [], 0
        while start < count:
            end = min(count, start + self._rng.randint(6, 18))
            sentence = " ".join(words[start:end])
            sentences.append(sentence[:1].upper() + sentence[1:] + self._rng.choice(".,.!?."))
            start = end
        return " ".join(sentences)

    def pairs(self, count: int) -> list[Pair]:
        return [
            Pair(self.text(*QUESTION_WORDS), self.text(*OUTPUT_WORDS), self.text(*REFERENCE_WORDS))
            for _ in range(count)
        ]


@dataclass
class StandIns:
    """Where the stand-ins live, built lazily one judge at a time (the largest is 3 GB of weights)."""

    root: Path
    sizes: JudgeSizes
    vocab_files: tuple[Path, Path] = field(init=False)
    tokens: int = field(init=False)

    def __post_init__(self) -> None:
        from tokenizers import ByteLevelBPETokenizer

        maker = TextMaker(seed=7)
        bpe = ByteLevelBPETokenizer()
        corpus = [maker.text(*OUTPUT_WORDS) for _ in range(BPE_TRAINING_TEXTS)]
        bpe.train_from_iterator(
            corpus, vocab_size=BPE_VOCAB, special_tokens=[*ROBERTA_SPECIALS, *DEBERTA_SPECIALS], show_progress=False
        )
        folder = self.root / "bpe"
        folder.mkdir(parents=True)
        vocab, merges = bpe.save_model(str(folder))
        self.vocab_files = (Path(vocab), Path(merges))
        self.tokens = bpe.get_vocab_size()

    def _vocab(self, dims: Dims) -> int:
        return dims.vocab if dims.vocab is not None else self.tokens

    def _tokenizer_dir(self, name: str, cls: Any) -> Path:
        folder = self.root / name
        vocab, merges = self.vocab_files
        cls(vocab_file=str(vocab), merges_file=str(merges), model_max_length=MAX_TOKENS).save_pretrained(folder)
        return folder

    def _saved(self, judge: str, tokenizer: Any) -> Path:
        """The judge's model and tokenizer saved in a folder of their own. The model is built and saved in a
        child process, so that this process's memory holds only the loaded judge, as fmeval's would."""
        folder = self._tokenizer_dir(judge, tokenizer)
        dims = self.sizes.dims[judge]
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(save_model, judge, dims, dims.vocab or self.tokens, str(folder)).result()
        return folder

    def detoxify(self) -> tuple[Any, Any]:
        """The model and tokenizer fmeval's DetoxifyHelperModel builds: RobertaForSequenceClassification and
        the slow RobertaTokenizer (the checkpoint's `tokenizer_name`)."""
        from transformers import RobertaForSequenceClassification, RobertaTokenizer, RobertaTokenizerFast

        folder = self._saved("detoxify", RobertaTokenizerFast)
        return RobertaForSequenceClassification.from_pretrained(folder).eval(), RobertaTokenizer.from_pretrained(folder)

    def toxigen(self) -> Any:
        """fmeval's ToxiGen judge: `pipeline("text-classification", model=...)`."""
        from transformers import RobertaTokenizerFast, pipeline

        return pipeline("text-classification", model=str(self._saved("toxigen", RobertaTokenizerFast)))

    def bertscore(self) -> Path:
        """The folder `bert_score` loads the DeBERTa and its tokenizer from."""
        from transformers import DebertaTokenizerFast

        return self._saved("bertscore", DebertaTokenizerFast)


def save_model(judge: str, dims: Dims, vocab: int, folder: str) -> None:
    """Build the judge's model with random weights (seeded) and save it to `folder`."""
    import torch
    from transformers import (
        DebertaConfig,
        DebertaModel,
        PretrainedConfig,
        PreTrainedModel,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    shape = {
        "vocab_size": vocab,
        "hidden_size": dims.hidden,
        "num_hidden_layers": dims.layers,
        "num_attention_heads": dims.heads,
        "intermediate_size": dims.intermediate,
    }
    config: PretrainedConfig
    model: PreTrainedModel
    torch.manual_seed(0)
    if judge == "bertscore":
        # microsoft/deberta-xlarge-mnli's config: DeBERTa (v1) with relative attention.
        config = DebertaConfig(
            **shape,
            max_position_embeddings=MAX_TOKENS,
            relative_attention=True,
            pos_att_type=["c2p", "p2c"],
            max_relative_positions=-1,
            position_biased_input=False,
            type_vocab_size=0,
            layer_norm_eps=1e-7,
            pad_token_id=len(ROBERTA_SPECIALS) + DEBERTA_SPECIALS.index("[PAD]"),
        )
        model = DebertaModel(config)
    else:
        config = RobertaConfig(
            **shape,
            max_position_embeddings=MAX_TOKENS + 2,
            type_vocab_size=1,
            pad_token_id=ROBERTA_SPECIALS.index("<pad>"),
            bos_token_id=ROBERTA_SPECIALS.index("<s>"),
            eos_token_id=ROBERTA_SPECIALS.index("</s>"),
            num_labels=JUDGE_LABELS[judge],
        )
        model = RobertaForSequenceClassification(config)
    model.eval().save_pretrained(folder)


class BertscoreMetric:
    """`evaluate.load("bertscore")` without the hub's metric script, doing what that script does: one
    `bert_score.BERTScorer` per metric object (rebuilt when the model or the layer changes), at the layer
    `bert_score.utils.model2layers` gives the requested model, scoring all pairs of a call at `batch_size`.
    The weights come from `model_dir` whatever model is requested."""

    def __init__(self, model_dir: Path, forwards: ForwardCounter) -> None:
        self._model_dir = model_dir
        self._forwards = forwards
        self._scorer: Any = None
        self._key: tuple[str, int, str | None] | None = None

    def compute(
        self,
        *,
        predictions: list[str],
        references: list[str],
        model_type: str,
        device: str | None = None,
        batch_size: int = 64,
        **unsupported: Any,
    ) -> dict[str, list[float]]:
        from bert_score import BERTScorer
        from bert_score.utils import model2layers

        if unsupported:
            raise TypeError(f"the BERTScore stand-in does not implement {sorted(unsupported)}")
        key = (model_type, model2layers[model_type], device)
        if self._key != key:
            self._scorer = BERTScorer(
                model_type=str(self._model_dir), num_layers=key[1], device=device, batch_size=batch_size
            )
            self._forwards.watch(self._scorer._model)
            self._key = key
        precision, recall, f1 = self._scorer.score(cands=predictions, refs=references, batch_size=batch_size)
        return {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist()}


class RssPeak:
    """The peak RSS of this process while a path runs (psutil, sampled every 20 ms): fmeval runs Detoxify
    with autograd on, which keeps every layer's activations of a batch alive until the batch is done."""

    def __init__(self, interval: float = 0.02) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._sample, name="judge-rss", daemon=True)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while True:
            self.peak = max(self.peak, me.memory_info().rss)
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def megabytes(self) -> float:
        return self.peak / 2**20


class ForwardCounter:
    """Forward passes of a judge's torch model (a hook on its top module): what batching changes."""

    def __init__(self) -> None:
        self.count = 0

    def watch(self, model: Any) -> None:
        model.register_forward_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self.count += 1


FMEVAL_HELPER_MODULE = "fmeval.eval_algorithms.helper_models.helper_model"


def _fmeval_scoring_intact() -> str | None:
    """Why fmeval's judge code is not its own in this process (a test's stand-in), or None."""
    from fmeval.eval_algorithms.helper_models import helper_model

    for cls in (helper_model.BertscoreHelperModel, helper_model.DetoxifyHelperModel, helper_model.ToxigenHelperModel):
        method = cls.get_helper_scores
        if method.__module__ != FMEVAL_HELPER_MODULE:
            return f"{cls.__name__}.get_helper_scores is {method.__module__}.{method.__qualname__}"
    return None


@contextmanager
def installed(judge: str, standins: StandIns, forwards: ForwardCounter) -> Iterator[None]:
    """fmeval's helper model for `judge` built from its stand-in, its forward passes counted; everything
    restored afterwards."""
    import evaluate
    from fmeval.eval_algorithms.helper_models import helper_model

    from step_code.fmeval_runtime import defer_bertscore_load

    defer_bertscore_load()
    detoxify: Any = helper_model.DetoxifyHelperModel
    toxigen: Any = helper_model.ToxigenHelperModel
    saved = (detoxify.__init__, toxigen.__init__, evaluate.load)
    if judge == "detoxify":
        model, tokenizer = standins.detoxify()
        forwards.watch(model)

        def detoxify_init(self: Any) -> None:
            self._model, self._tokenizer = model, tokenizer

        detoxify.__init__ = detoxify_init
    elif judge == "toxigen":
        classifier = standins.toxigen()
        forwards.watch(classifier.model)

        def toxigen_init(self: Any) -> None:
            self._model = classifier

        toxigen.__init__ = toxigen_init
    else:
        metric = BertscoreMetric(standins.bertscore(), forwards)
        original_load = evaluate.load

        def load(path: str, *args: Any, **kwargs: Any) -> Any:
            return metric if path == "bertscore" else original_load(path, *args, **kwargs)

        evaluate.load = load
    try:
        yield
    finally:
        detoxify.__init__, toxigen.__init__, evaluate.load = saved


@dataclass(frozen=True)
class PathRun:
    """One way of scoring the records: its label, its timing and each record's judge scores."""

    label: str
    batch: str
    seconds: float
    scores: list[dict[str, float | None]]
    forwards: int = 0
    peak_rss_mb: float = 0.0

    @property
    def records_per_second(self) -> float:
        return len(self.scores) / self.seconds


@dataclass(frozen=True)
class JudgeCase:
    judge: str
    model: str
    dims: Dims
    fmeval: PathRun
    ours: list[tuple[int, PathRun]]
    expected_forwards: Mapping[int, int]
    tokens_per_output: float
    tokens_per_reference: float

    def difference(self, run: PathRun) -> float:
        worst = 0.0
        if len(run.scores) != len(self.fmeval.scores):
            return math.inf
        for theirs, mine in zip(self.fmeval.scores, run.scores, strict=True):
            for name, value in theirs.items():
                other = mine.get(name)
                if value is None or other is None or math.isnan(value) or math.isnan(other):
                    return math.inf
                worst = max(worst, abs(value - other))
        return worst

    @property
    def best(self) -> PathRun:
        return max((run for _, run in self.ours), key=lambda run: run.records_per_second)


@dataclass(frozen=True)
class JudgeBenchResult:
    cases: list[JudgeCase]
    refused: str | None = None

    @property
    def problems(self) -> list[str]:
        found = [self.refused] if self.refused else []
        for case in self.cases:
            for size, run in case.ours:
                if run.forwards != case.expected_forwards[size]:
                    found.append(
                        f"judges: {case.judge} batch {size}: {run.forwards} forward passes of the model, expected "
                        f"{case.expected_forwards[size]} (the batch size did not reach the model)"
                    )
                difference = case.difference(run)
                if not difference <= MAX_DIFFERENCE:
                    found.append(
                        f"judges: {case.judge} batch {size} differs from fmeval's path by {difference:.1e} "
                        f"(more than {MAX_DIFFERENCE:g})"
                    )
        return found


@dataclass(frozen=True)
class JudgeSpec:
    """How a judge is scored: the algorithm that uses it, its score names and fmeval's path (a)."""

    algorithm: Callable[[], Any]
    score_names: Callable[[], list[str]]
    fmeval_path: Callable[[Any, list[Pair]], list[dict[str, float | None]]]
    fmeval_batch: str
    model: str


def _qa_accuracy() -> Any:
    from fmeval.eval_algorithms.qa_accuracy import QAAccuracy, QAAccuracyConfig

    return QAAccuracy(QAAccuracyConfig())


def _toxicity(model_type: str) -> Callable[[], Any]:
    def build() -> Any:
        from fmeval.eval_algorithms.toxicity import Toxicity, ToxicityConfig

        return Toxicity(ToxicityConfig(model_type=model_type))

    return build


def _record(pair: Pair) -> dict[str, str]:
    from step_code.record_scoring import MODEL_INPUT, MODEL_OUTPUT, TARGET_OUTPUT

    return {MODEL_INPUT: pair.question, TARGET_OUTPUT: pair.reference, MODEL_OUTPUT: pair.output}


def _fmeval_records(algorithm: Any, pairs: list[Pair]) -> list[dict[str, float | None]]:
    """QAAccuracy's transform pipeline record by record: one BERTScore `compute` per pair."""
    from fmeval.transforms.summarization_accuracy_metrics import BERT_SCORE

    return [{BERT_SCORE: algorithm.pipeline.execute_record(_record(pair))[BERT_SCORE]} for pair in pairs]


def _fmeval_toxicity(algorithm: Any, pairs: list[Pair]) -> list[dict[str, float | None]]:
    """`ToxicityScores` on batches of fmeval's TOXICITY_BATCH_SIZE, as `evaluate()`'s map_batches runs it."""
    import numpy as np
    from fmeval.eval_algorithms.toxicity import TOXICITY_BATCH_SIZE, ToxicityScores

    from step_code.record_scoring import MODEL_OUTPUT

    helper = algorithm._helper_model
    transform = ToxicityScores(input_key=MODEL_OUTPUT, toxicity_helper_model=helper)
    names = helper.get_score_names()
    scores: list[dict[str, float | None]] = []
    for start in range(0, len(pairs), TOXICITY_BATCH_SIZE):
        chunk = pairs[start : start + TOXICITY_BATCH_SIZE]
        result = transform({MODEL_OUTPUT: np.asarray([pair.output for pair in chunk], dtype=object)})
        scores += [{name: float(result[name][i]) for name in names} for i in range(len(chunk))]
    return scores


def _detoxify_names() -> list[str]:
    from fmeval.eval_algorithms.helper_models.helper_model import DETOXIFY_SCORE_NAMES

    return list(DETOXIFY_SCORE_NAMES)


def _toxigen_names() -> list[str]:
    from fmeval.eval_algorithms.helper_models.helper_model import TOXIGEN_SCORE_NAME

    return [TOXIGEN_SCORE_NAME]


def _bertscore_names() -> list[str]:
    from fmeval.transforms.summarization_accuracy_metrics import BERT_SCORE

    return [BERT_SCORE]


SPECS: Mapping[str, JudgeSpec] = {
    "detoxify": JudgeSpec(
        _toxicity("detoxify"),
        _detoxify_names,
        _fmeval_toxicity,
        "64 texts",
        "RobertaForSequenceClassification, roberta-base dims, 7 labels",
    ),
    "toxigen": JudgeSpec(
        _toxicity("toxigen"),
        _toxigen_names,
        _fmeval_toxicity,
        "1 text (no batch_size)",
        "text-classification pipeline, roberta-large dims, 2 labels",
    ),
    "bertscore": JudgeSpec(
        _qa_accuracy,
        _bertscore_names,
        _fmeval_records,
        "1 pair per compute",
        "DeBERTa, deberta-xlarge dims, bert_score at model2layers[fmeval's default]",
    ),
}


def _ours(algorithm: Any, pairs: list[Pair], batch_size: int, names: list[str]) -> PathRun:
    """`AlgorithmScorer` with judge batching over the records, in the evaluate step's batches."""
    from step_code import record_scoring
    from step_code.judge_batching import JudgeSettings

    judges = JudgeSettings(batch_size=batch_size)
    scoring = record_scoring.SCORINGS[type(algorithm).__name__](
        algorithm,
        record_scoring.ScoringContext(
            runner=None, prompt_template="$model_input", target_labels=(), omitted_judges=(), judges=judges
        ),
    )
    records = [
        record_scoring.ScoringRecord(
            record_id=f"r{index}",
            index=index,
            prompt=pair.question,
            model_input=pair.question,
            target_output=pair.reference,
            category=None,
            model_output=pair.output,
        )
        for index, pair in enumerate(pairs)
    ]
    scores_out = io.StringIO()
    scorer = record_scoring.AlgorithmScorer(scoring, io.StringIO(), None, scores_out, judges)
    started = time.perf_counter()
    for batch in _score_batches(records):
        scorer.score_batch(batch)
    seconds = time.perf_counter() - started
    by_id = {row["record_id"]: row["scores"] for row in map(json.loads, scores_out.getvalue().splitlines())}
    scores = [{name: by_id.get(record.record_id, {}).get(name) for name in names} for record in records]
    return PathRun(f"(b) batch {batch_size}", str(batch_size), seconds, scores)


def _score_batches(rows: Sequence[Any]) -> list[Sequence[Any]]:
    from step_code.record_scoring import BATCH_SIZE

    return [rows[start : start + BATCH_SIZE] for start in range(0, len(rows), BATCH_SIZE)]


def expected_forwards(judge: str, pairs: list[Pair], batch_size: int) -> int:
    """Forward passes of the judge's model when (b) batches at `batch_size`: per batch of records, the
    toxicity detectors see its outputs in chunks of that size; bert_score embeds the distinct texts of
    all its pairs (outputs and references) that many at a time."""
    total = 0
    for batch in _score_batches(pairs):
        texts = (
            len({text for pair in batch for text in (pair.output, pair.reference)})
            if judge == "bertscore"
            else len(batch)
        )
        total += math.ceil(texts / batch_size)
    return total


def _mean_tokens(tokenizer: Any, texts: Sequence[str]) -> float:
    return sum(len(tokenizer(text)["input_ids"]) for text in texts) / len(texts)


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_judge(judge: str, standins: StandIns, pairs: list[Pair]) -> JudgeCase:
    from transformers import AutoTokenizer

    spec = SPECS[judge]
    names = spec.score_names()
    sizes = standins.sizes
    forwards = ForwardCounter()
    with installed(judge, standins, forwards):
        # Untimed: loads the model where fmeval loads it lazily and warms torch's kernels.
        spec.fmeval_path(spec.algorithm(), pairs[:2])
        # A new algorithm object for every path: ours gives ToxiGen's helper a batch size.
        algorithm = spec.algorithm()
        forwards.count = 0
        with RssPeak() as rss:
            started = time.perf_counter()
            fmeval_scores = spec.fmeval_path(algorithm, pairs)
            seconds = time.perf_counter() - started
        fmeval = PathRun("(a) fmeval", spec.fmeval_batch, seconds, fmeval_scores, forwards.count, rss.megabytes)
        ours = []
        for size in sizes.batch_sizes[judge]:
            forwards.count = 0
            with RssPeak() as rss:
                run = _ours(spec.algorithm(), pairs, size, names)
            ours.append((size, replace(run, forwards=forwards.count, peak_rss_mb=rss.megabytes)))
        del algorithm
    tokenizer = AutoTokenizer.from_pretrained(standins.root / judge)
    case = JudgeCase(
        judge=judge,
        model=spec.model,
        dims=sizes.dims[judge],
        fmeval=fmeval,
        ours=ours,
        expected_forwards={size: expected_forwards(judge, pairs, size) for size, _ in ours},
        tokens_per_output=_mean_tokens(tokenizer, [pair.output for pair in pairs]),
        tokens_per_reference=_mean_tokens(tokenizer, [pair.reference for pair in pairs]),
    )
    gc.collect()
    return case


def run(sizes: JudgeSizes = FULL) -> JudgeBenchResult:
    import torch

    print(
        f"== judges: fmeval's judge models as stand-ins of their real size with random weights, on the CPU "
        f"({torch.get_num_threads()} torch threads); records of {OUTPUT_WORDS[0]}-{OUTPUT_WORDS[1]}-word outputs "
        f"and {REFERENCE_WORDS[0]}-{REFERENCE_WORDS[1]}-word references"
    )
    tampered = _fmeval_scoring_intact()
    if tampered is not None:
        return JudgeBenchResult([], f"judges: fmeval's judge code is replaced in this process ({tampered})")
    maker = TextMaker(seed=13)
    cases = []
    with tempfile.TemporaryDirectory(prefix="evalops-judge-bench-") as tmp, environment(**OFFLINE_ENV):
        standins = StandIns(Path(tmp), sizes)
        for judge in JUDGES:
            cases.append(run_judge(judge, standins, maker.pairs(sizes.records[judge])))
    result = JudgeBenchResult(cases)
    print_result(result, torch.cuda.is_available())
    return result


def print_result(result: JudgeBenchResult, gpu: bool) -> None:
    rows: list[tuple[object, ...]] = []
    for case in result.cases:
        base = case.fmeval.records_per_second
        for run in (case.fmeval, *(run for _, run in case.ours)):
            difference = "-" if run is case.fmeval else f"{case.difference(run):.1e}"
            rows.append(
                (
                    f"{case.judge} {run.label}",
                    len(run.scores),
                    run.batch,
                    run.forwards,
                    f"{run.seconds:.1f}",
                    f"{run.records_per_second:.2f}",
                    f"{run.records_per_second / base:.2f}x",
                    f"{run.peak_rss_mb:,.0f}",
                    difference,
                )
            )
    print()
    print_table(
        [
            "judge, path",
            "records",
            "texts per call",
            "forward passes",
            "s",
            "records/s",
            "speed-up",
            "peak RSS MB",
            "max |a - b|",
        ],
        rows,
    )
    for case in result.cases:
        print(
            f"{case.judge}: {case.model} (here hidden {case.dims.hidden}, {case.dims.layers} layers, "
            f"{case.dims.heads} heads, FFN {case.dims.intermediate}, vocab {case.dims.vocab or 'of the tokenizer'}); "
            f"{case.tokens_per_output:.0f} tokens per output, {case.tokens_per_reference:.0f} per reference"
        )
    agree = all(case.difference(run) <= MAX_DIFFERENCE for case in result.cases for _, run in case.ours)
    print(f"(a) and (b) agree within {MAX_DIFFERENCE:g} for every judge and batch size: {'yes' if agree else 'NO'}")
    print("GPU: not measured, " + ("the benchmark runs on the CPU only" if gpu else "this machine has no GPU"))
    print(f"peak RSS of the process: {_peak_rss_mb():,.0f} MB")
    print()
    for line in projection(result.cases):
        print(line)


def projection(cases: Sequence[JudgeCase]) -> list[str]:
    """What each judge adds to an evaluate instance's work for 1M prompts, at the best measured CPU rate."""
    from pipeline_definitions.estimating.scale import SCORING_RECORDS_PER_SECOND
    from pipeline_definitions.planning.step_kinds import STEP_KINDS
    from step_code.contract.pricing import price_table

    price = price_table().instance_usd_per_hour["processing"][EVALUATE_INSTANCE]
    prompts, shards = PROJECTED_PROMPTS, PROJECTED_SHARDS
    lexical_hours = prompts / SCORING_RECORDS_PER_SECOND / 3600
    lines = [
        f"Projection: a judge algorithm on CPU, {prompts:,} prompts per model over {shards} {EVALUATE_INSTANCE} "
        f"shards (${price:.3f}/h), assuming an instance scores at the best rate measured here; the estimate "
        f"(estimating/scale.py) counts {SCORING_RECORDS_PER_SECOND:,.0f} records/s of client and lexical "
        f"scoring ({lexical_hours:.2f} instance-hours) and no judge",
    ]
    limit_hours = (STEP_KINDS["evaluate_shards"].max_runtime_seconds or math.inf) / 3600
    for case in cases:
        rate = case.best.records_per_second
        hours = prompts / rate / 3600
        over = (
            f", over the evaluate job's {limit_hours:g} h limit: at least {math.ceil(hours / limit_hours)} shards"
            if hours / shards > limit_hours
            else ""
        )
        lines.append(
            f"  {case.judge}: {rate:.2f} records/s ({case.best.label}) = {rate * 3600:,.0f} records per "
            f"instance-hour; adds {hours:,.1f} instance-hours = ${hours * price:,.2f} per model, "
            f"{hours / shards:,.1f} h of wall per shard{over}"
        )
    return lines
