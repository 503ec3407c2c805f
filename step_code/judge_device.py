"""Where fmeval's judge models run: the one place that chooses the device and puts them there.

The device is `EVALOPS_JUDGE_DEVICE` (`cpu` by default; the GPU step image sets `cuda`). fmeval builds
its helper models on the CPU (Detoxify's state dict is mapped to "cpu", ToxiGen's pipeline gets no
device, BERTScore lets `bert_score` pick), so on a GPU instance each is moved: Detoxify's model after it
is built (fmeval already sends its inputs to `self._model.device`), ToxiGen's pipeline built on the
device, BERTScore computed with `device=`. Scores do not change, only where the arithmetic runs.
"""

from __future__ import annotations

import os
from typing import Any

from step_code.aws_resources import ControlPlaneError
from step_code.contract.compute import JUDGE_DEVICE_ENV, JUDGE_DEVICES


class JudgeDeviceError(ControlPlaneError):
    """The requested device cannot be used; the step ends with this one line."""


def judge_device() -> str:
    device = os.environ.get(JUDGE_DEVICE_ENV, "cpu").strip().lower() or "cpu"
    if device not in JUDGE_DEVICES:
        raise JudgeDeviceError(f"{JUDGE_DEVICE_ENV}={device!r}: expected one of {', '.join(JUDGE_DEVICES)}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise JudgeDeviceError(
                f"{JUDGE_DEVICE_ENV}=cuda but torch sees no CUDA device (a GPU image on a CPU instance?)"
            )
    return device


def place_judges(device: str) -> None:
    """Build fmeval's judge models on `device` (idempotent; nothing to do on the CPU)."""
    if device == "cpu":
        return
    from fmeval.eval_algorithms.helper_models import helper_model

    detoxify: Any = helper_model.DetoxifyHelperModel
    if getattr(detoxify, "_evalops_device", None) == device:
        return
    built_on_cpu = detoxify.__init__

    def detoxify_init(self: Any) -> None:
        built_on_cpu(self)
        self._model = self._model.to(device)

    toxigen: Any = helper_model.ToxigenHelperModel

    def toxigen_init(self: Any) -> None:
        self._model = helper_model.pipeline("text-classification", model=toxigen.TOXIGEN_MODEL_NAME, device=device)

    bertscore: Any = helper_model.BertscoreHelperModel

    def bertscore_scores(self: Any, target_output: str, model_output: str) -> float:
        result = self._bertscore.compute(
            predictions=[model_output], references=[target_output], model_type=self._model_type, device=device
        )
        return float(result["f1"][0])

    detoxify.__init__ = detoxify_init
    toxigen.__init__ = toxigen_init
    bertscore.get_helper_scores = bertscore_scores
    for cls in (detoxify, toxigen, bertscore):
        cls._evalops_device = device
