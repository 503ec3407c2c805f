"""What fmeval's algorithms download at run time, how to tell whether it is already here, and how to bake it.

Evaluation jobs may run in a VPC without internet, so the step image fetches everything at build time
(`python -m step_code.offline_assets`, run by the Dockerfile) into HF_HOME, NLTK_DATA and TORCH_HOME,
and runs with the hubs switched off. Before invoking a model, the evaluate step checks the assets of
every configured algorithm, so a missing one is a one-line error instead of a failure after the
endpoint has been paid for.

Baking runs fmeval's own loaders once (the helper models score one pair), so the image holds exactly
the files those loaders read at run time.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from step_code.contract import algorithms as algorithm_table
from step_code.contract.algorithms import BERTSCORE_DEFAULT_MODEL, BERTSCORE_MODELS, AssetKind

TOXIGEN_REPO = "tomh/toxigen_roberta"
# fmeval's DetoxifyHelperModel: a torch hub checkpoint plus roberta-base's config and tokenizer.
DETOXIFY_CHECKPOINT = "toxic_debiased-c7548aa0.ckpt"
DETOXIFY_BASE_REPO = "roberta-base"
# MeteorScore calls nltk.download for these at construction time.
NLTK_PACKAGES = {
    "wordnet": "corpora/wordnet",
    "omw-1.4": "corpora/omw-1.4",
    "punkt": "tokenizers/punkt",
    "punkt_tab": "tokenizers/punkt_tab",
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class Asset:
    description: str
    # The judge model this asset belongs to; a judge hook providing that judge makes the asset unnecessary.
    judge: str | None
    is_present: Callable[[], bool]
    fetch: Callable[[], None]


def _evaluate_metric_cached(name: str) -> bool:
    from evaluate import config as evaluate_config

    folder = Path(evaluate_config.HF_MODULES_CACHE) / "evaluate_modules" / "metrics" / f"evaluate-metric--{name}"
    return any(folder.glob(f"*/{name}.py"))


def _hub_files_cached(repo: str, *alternatives: tuple[str, ...]) -> bool:
    """Each tuple names files of which at least one must be in the local hub cache."""
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> bool:
        return isinstance(try_to_load_from_cache(repo, filename), str)

    return all(any(cached(name) for name in group) for group in alternatives)


def _nltk_present(resource: str) -> bool:
    import nltk

    try:
        nltk.data.find(resource)
    except LookupError:
        return False
    return True


def _torch_checkpoint_present(filename: str) -> bool:
    import torch

    return (Path(torch.hub.get_dir()) / "checkpoints" / filename).is_file()


def _fetch_bertscore(model_type: str) -> None:
    from fmeval.eval_algorithms.helper_models.helper_model import BertscoreHelperModel

    BertscoreHelperModel(model_type).get_helper_scores("a reference", "a prediction")


def _fetch_rouge() -> None:
    import evaluate

    evaluate.load("rouge").compute(predictions=["a prediction"], references=["a reference"])


def _fetch_wer() -> None:
    import evaluate

    evaluate.load("wer").compute(predictions=["a prediction"], references=["a reference"])


def _fetch_nltk() -> None:
    import nltk

    for package in NLTK_PACKAGES:
        if not nltk.download(package, quiet=True, raise_on_error=True):
            raise RuntimeError(f"nltk could not download {package}")


def _fetch_toxigen() -> None:
    from fmeval.eval_algorithms.helper_models.helper_model import ToxigenHelperModel

    ToxigenHelperModel().get_helper_scores(["a sentence"])


def _fetch_detoxify() -> None:
    from fmeval.eval_algorithms.helper_models.helper_model import DetoxifyHelperModel

    DetoxifyHelperModel().get_helper_scores(["a sentence"])


def bertscore_assets(model_type: str) -> list[Asset]:
    return [
        Asset(
            description="the evaluate metric script 'bertscore'",
            judge="bertscore",
            is_present=lambda: _evaluate_metric_cached("bertscore"),
            fetch=lambda: _fetch_bertscore(model_type),
        ),
        Asset(
            description=f"the BERTScore model {model_type}",
            judge="bertscore",
            is_present=lambda: _hub_files_cached(model_type, ("config.json",), WEIGHT_FILES),
            fetch=lambda: _fetch_bertscore(model_type),
        ),
    ]


ROUGE_ASSET = Asset(
    description="the evaluate metric script 'rouge'",
    judge=None,
    is_present=lambda: _evaluate_metric_cached("rouge"),
    fetch=_fetch_rouge,
)
# GeneralSemanticRobustness's WER transform loads it when it is built.
WER_ASSET = Asset(
    description="the evaluate metric script 'wer'",
    judge=None,
    is_present=lambda: _evaluate_metric_cached("wer"),
    fetch=_fetch_wer,
)
NLTK_ASSET = Asset(
    description=f"the nltk data {', '.join(NLTK_PACKAGES)} (METEOR)",
    judge=None,
    is_present=lambda: all(_nltk_present(resource) for resource in NLTK_PACKAGES.values()),
    fetch=_fetch_nltk,
)
TOXIGEN_ASSET = Asset(
    description=f"the ToxiGen model {TOXIGEN_REPO}",
    judge="toxigen",
    is_present=lambda: _hub_files_cached(TOXIGEN_REPO, ("config.json",), WEIGHT_FILES),
    fetch=_fetch_toxigen,
)
DETOXIFY_ASSET = Asset(
    description=f"the Detoxify checkpoint {DETOXIFY_CHECKPOINT} with the {DETOXIFY_BASE_REPO} tokenizer",
    judge="detoxify",
    is_present=lambda: (
        _torch_checkpoint_present(DETOXIFY_CHECKPOINT)
        and _hub_files_cached(DETOXIFY_BASE_REPO, ("config.json",), ("vocab.json",), ("merges.txt",))
    ),
    fetch=_fetch_detoxify,
)


def _toxicity_model(fields: Mapping[str, Any]) -> list[Asset]:
    return [TOXIGEN_ASSET] if fields.get("model_type") == "toxigen" else [DETOXIFY_ASSET]


# The assets of each download kind of the algorithm table, given the algorithm's config fields.
ASSETS_OF: dict[AssetKind, Callable[[Mapping[str, Any]], list[Asset]]] = {
    "bertscore": lambda fields: bertscore_assets(str(fields.get("model_type_for_bertscore", BERTSCORE_DEFAULT_MODEL))),
    "meteor-rouge": lambda _fields: [ROUGE_ASSET, NLTK_ASSET],
    "toxicity-model": _toxicity_model,
    "wer": lambda _fields: [WER_ASSET],
}


def required_assets(algorithm: str, fields: Mapping[str, Any]) -> list[Asset]:
    """The downloads fmeval's `algorithm` makes with these config fields (an empty list: none)."""
    kinds = algorithm_table.lookup(algorithm).downloads
    return [asset for kind in ASSETS_OF if kind in kinds for asset in ASSETS_OF[kind](fields)]


def missing_assets(algorithm: str, fields: Mapping[str, Any], provided_judges: frozenset[str]) -> list[Asset]:
    return [
        asset
        for asset in required_assets(algorithm, fields)
        if (asset.judge is None or asset.judge not in provided_judges) and not asset.is_present()
    ]


def image_assets(bertscore_models: list[str]) -> list[Asset]:
    """What the step image bakes: every algorithm's downloads, with the chosen BERTScore models."""
    assets: list[Asset] = [ROUGE_ASSET, WER_ASSET, NLTK_ASSET, TOXIGEN_ASSET, DETOXIFY_ASSET]
    for model_type in bertscore_models:
        assets.extend(bertscore_assets(model_type))
    return assets


def bake(assets: list[Asset]) -> list[str]:
    """Fetch what is missing; returns the descriptions of assets still missing afterwards."""
    for asset in assets:
        if not asset.is_present():
            print(f"fetching {asset.description}", flush=True)
            asset.fetch()
    return [asset.description for asset in assets if not asset.is_present()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Download what fmeval's algorithms load at run time.")
    parser.add_argument("--check", action="store_true", help="Only report what is missing; download nothing.")
    parser.add_argument(
        "--bertscore-model",
        action="append",
        choices=BERTSCORE_MODELS,
        help=f"BERTScore model to bake (repeatable; default {BERTSCORE_DEFAULT_MODEL}).",
    )
    args = parser.parse_args(argv)
    assets = image_assets(args.bertscore_model or [BERTSCORE_DEFAULT_MODEL])
    missing = [a.description for a in assets if not a.is_present()] if args.check else bake(assets)
    for description in missing:
        print(f"missing: {description}")
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
