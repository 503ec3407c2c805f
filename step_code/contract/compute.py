"""Which instances have a GPU, and the device the judge models run on.

An evaluate job on a GPU instance runs the GPU variant of the step image (CUDA torch), whose
environment says `EVALOPS_JUDGE_DEVICE=cuda`; `step_code.judge_device` is the one place that reads it.
"""

from __future__ import annotations

# SageMaker instance families with NVIDIA GPUs that processing jobs offer.
GPU_INSTANCE_FAMILIES = frozenset({"g4dn", "g5", "g6", "g6e", "p3", "p4d", "p4de", "p5"})
JUDGE_DEVICE_ENV = "EVALOPS_JUDGE_DEVICE"
# The downloads (`algorithms.AssetKind`) that are judge models, the work a GPU instance speeds up.
JUDGE_ASSET_KINDS = frozenset({"bertscore", "toxicity-model"})
JUDGE_DEVICES = ("cpu", "cuda")
# Texts per judge forward pass by device. On the CPU 16 was the fastest size measured for BERTScore (2.0x
# fmeval's pair-by-pair path, 1.5x at 64, whose padded DeBERTa batches also took 5.8 GB) and within noise of
# 64 for the toxicity detectors (`python -m benchmarks --only judges`, 2026-12-05); on a GPU, 64: fmeval's own
# toxicity batch and bert_score's default (no GPU was measured).
DEFAULT_JUDGE_BATCH_SIZES = {"cpu": 16, "cuda": 64}
MAX_JUDGE_BATCH_SIZE = 1024


def instance_family(instance_type: str) -> str:
    """`ml.g5.2xlarge` -> `g5`."""
    parts = instance_type.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "ml" else ""


def is_gpu_instance(instance_type: str) -> bool:
    return instance_family(instance_type) in GPU_INSTANCE_FAMILIES
