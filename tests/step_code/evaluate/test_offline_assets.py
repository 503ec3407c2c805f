"""Detecting what fmeval would download, against cache folders laid out the way the libraries write them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from step_code import offline_assets
from step_code.contract import algorithms as algorithm_table

NONE: frozenset[str] = frozenset()


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Empty evaluate-module, hub, torch and nltk caches under tmp_path."""
    import evaluate.config
    import huggingface_hub.constants
    import nltk
    import torch

    monkeypatch.setattr(evaluate.config, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data")])
    previous_torch_hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch" / "hub"))
    yield tmp_path
    torch.hub.set_dir(previous_torch_hub)


def hub_files(root: Path, repo: str, *files: str) -> None:
    """A hub cache entry: refs/main naming a snapshot that holds `files`."""
    folder = root / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("abc123")
    snapshot = folder / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in files:
        (snapshot / name).write_text("{}")


def metric_script(root: Path, name: str) -> None:
    folder = root / "modules" / "evaluate_modules" / "metrics" / f"evaluate-metric--{name}" / "f00d"
    folder.mkdir(parents=True)
    (folder / f"{name}.py").write_text("# metric")


def descriptions(algorithm: str, fields: dict[str, str] | None = None, judges: frozenset[str] = NONE) -> list[str]:
    return [a.description for a in offline_assets.missing_assets(algorithm, fields or {}, judges)]


def test_bertscore_needs_the_metric_script_and_the_model_weights(caches: Path) -> None:
    assert descriptions("QAAccuracy") == [
        "the evaluate metric script 'bertscore'",
        "the BERTScore model microsoft/deberta-xlarge-mnli",
    ]
    metric_script(caches, "bertscore")
    hub_files(caches, "microsoft/deberta-xlarge-mnli", "config.json")
    assert descriptions("QAAccuracy") == ["the BERTScore model microsoft/deberta-xlarge-mnli"]
    (caches / "hub/models--microsoft--deberta-xlarge-mnli/snapshots/abc123/pytorch_model.bin").write_text("w")
    assert descriptions("QAAccuracy") == []
    assert descriptions("QAAccuracy", {"model_type_for_bertscore": "roberta-large-mnli"}) == [
        "the BERTScore model roberta-large-mnli"
    ]


def test_summarization_needs_rouge_and_nltk_data_besides_bertscore(caches: Path) -> None:
    missing = descriptions("SummarizationAccuracy", judges=frozenset({"bertscore"}))
    assert missing == [
        "the evaluate metric script 'rouge'",
        "the nltk data wordnet, omw-1.4, punkt, punkt_tab (METEOR)",
    ]
    metric_script(caches, "rouge")
    for resource in offline_assets.NLTK_PACKAGES.values():
        (caches / "nltk_data" / resource).mkdir(parents=True)
    assert descriptions("SummarizationAccuracy", judges=frozenset({"bertscore"})) == []


def test_toxicity_needs_its_chosen_detector(caches: Path) -> None:
    assert descriptions("Toxicity") == [offline_assets.DETOXIFY_ASSET.description]
    checkpoints = caches / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / offline_assets.DETOXIFY_CHECKPOINT).write_text("ckpt")
    hub_files(caches, "roberta-base", "config.json", "vocab.json", "merges.txt")
    assert descriptions("QAToxicity") == []
    assert descriptions("Toxicity", {"model_type": "toxigen"}) == [offline_assets.TOXIGEN_ASSET.description]
    assert descriptions("Toxicity", {"model_type": "toxigen"}, judges=frozenset({"toxigen"})) == []


def test_assets_agree_with_the_algorithm_table() -> None:
    for spec in algorithm_table.ALGORITHMS:
        assert bool(offline_assets.required_assets(spec.algorithm, {})) == (spec.download is not None), spec
    wer = offline_assets.WER_ASSET
    assert wer in offline_assets.required_assets("GeneralSemanticRobustness", {})
    assert wer in offline_assets.image_assets([offline_assets.BERTSCORE_DEFAULT_MODEL])


def test_check_mode_lists_what_the_image_would_bake(caches: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert offline_assets.main(["--check"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "missing: the BERTScore model microsoft/deberta-xlarge-mnli" in lines
    assert "missing: the BERTScore model roberta-large-mnli" not in lines
    assert len(lines) == len(offline_assets.image_assets([offline_assets.BERTSCORE_DEFAULT_MODEL]))
