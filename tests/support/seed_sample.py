"""Where the reference AWS sample's own files are: `shared/seed-sample/` beside the clone (never in the repository).

In a git worktree the clone's folder is the main checkout's, so its sibling `shared/` is looked for there too.
A missing folder fails the tests that need it (CI has it), rather than skipping them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED_FOLDER = Path("shared") / "seed-sample"
SDK_DEFAULTS_FILE = "sm_pipelines__config.yaml"
EVALUATION_CONFIGS = (
    "sm_pipelines__pipeline_config.yaml",
    "sm_pipelines__pipeline_finetuning_config.yaml",
    "sm_pipelines__pipeline_scale_config.yaml",
    "sm_pipelines__pipeline_scale_hybrid_config.yaml",
    "sm_pipelines_advanced__pipeline_config.yaml",
    "sm_pipelines_advanced__pipeline_finetuning_config.yaml",
    "sm_pipelines_advanced__pipeline_scale_config.yaml",
    "sm_pipelines_advanced__pipeline_scale_hybrid_config.yaml",
)
FINETUNING_CONFIGS = tuple(name for name in EVALUATION_CONFIGS if "finetuning" in name or "hybrid" in name)


def _main_checkout() -> Path | None:
    result = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return Path(result.stdout.strip()).parent if result.returncode == 0 and result.stdout.strip() else None


def seed_sample_dir() -> Path:
    candidates = [REPO_ROOT.parent / SEED_FOLDER]
    main = _main_checkout()
    if main is not None:
        candidates.append(main.parent / SEED_FOLDER)
    for candidate in candidates:
        if (candidate / "configs").is_dir():
            return candidate
    raise AssertionError(f"the reference sample's files are missing: looked for {' and '.join(map(str, candidates))}")


def sample_s3_layout(catalog: Path) -> Path:
    """A prompt catalog laid out as the sample's S3 bucket: the dataset, and one folder per fine-tuning channel."""
    datasets = seed_sample_dir() / "datasets"
    (catalog / "train_dataset").mkdir(parents=True)
    (catalog / "val_dataset").mkdir()
    shutil.copyfile(datasets / "evaluation_dataset_trivia.jsonl", catalog / "evaluation_dataset_trivia.jsonl")
    shutil.copyfile(datasets / "train_dataset_trivia.jsonl", catalog / "train_dataset" / "train_dataset_trivia.jsonl")
    shutil.copyfile(datasets / "template.json", catalog / "train_dataset" / "template.json")
    shutil.copyfile(
        datasets / "validation_dataset_trivia.jsonl", catalog / "val_dataset" / "validation_dataset_trivia.jsonl"
    )
    return catalog
