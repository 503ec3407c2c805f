"""The judge models' device: chosen in one place, refused when it cannot be used, applied to fmeval's helpers."""

from __future__ import annotations

from typing import Any

import pytest

from step_code import judge_device
from step_code.contract.compute import is_gpu_instance


@pytest.mark.parametrize(
    ("instance_type", "gpu"),
    [
        ("ml.g5.2xlarge", True),
        ("ml.g6.xlarge", True),
        ("ml.p4d.24xlarge", True),
        ("ml.m5.xlarge", False),
        ("ml.c5.4xlarge", False),
        ("ml.inf2.xlarge", False),
        ("g5.2xlarge", False),
    ],
)
def test_gpu_instances_are_told_apart(instance_type: str, gpu: bool) -> None:
    assert is_gpu_instance(instance_type) is gpu


def test_the_device_is_cpu_unless_the_image_says_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVALOPS_JUDGE_DEVICE", raising=False)
    assert judge_device.judge_device() == "cpu"
    monkeypatch.setenv("EVALOPS_JUDGE_DEVICE", "tpu")
    with pytest.raises(judge_device.JudgeDeviceError, match=r"^EVALOPS_JUDGE_DEVICE='tpu': expected one of cpu, cuda$"):
        judge_device.judge_device()


def test_cuda_without_a_cuda_device_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setenv("EVALOPS_JUDGE_DEVICE", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(judge_device.JudgeDeviceError, match="torch sees no CUDA device"):
        judge_device.judge_device()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert judge_device.judge_device() == "cuda"


class _Model:
    def __init__(self) -> None:
        self.device = "cpu"

    def to(self, device: str) -> _Model:
        self.device = device
        return self


def test_on_cuda_every_judge_model_is_built_or_computed_there(monkeypatch: pytest.MonkeyPatch) -> None:
    from fmeval.eval_algorithms.helper_models import helper_model

    built: list[dict[str, Any]] = []
    computed: list[dict[str, Any]] = []

    def detoxify_on_cpu(self: Any) -> None:
        self._model = _Model()

    class Metric:
        def compute(self, **kwargs: Any) -> dict[str, list[float]]:
            computed.append(kwargs)
            return {"f1": [0.5]}

    # Recorded by monkeypatch first, so place_judges' changes are undone after the test.
    monkeypatch.setattr(helper_model.DetoxifyHelperModel, "__init__", detoxify_on_cpu)
    monkeypatch.setattr(helper_model.ToxigenHelperModel, "__init__", helper_model.ToxigenHelperModel.__init__)
    monkeypatch.setattr(
        helper_model.BertscoreHelperModel, "get_helper_scores", helper_model.BertscoreHelperModel.get_helper_scores
    )
    for cls in (helper_model.DetoxifyHelperModel, helper_model.ToxigenHelperModel, helper_model.BertscoreHelperModel):
        monkeypatch.setattr(cls, "_evalops_device", None, raising=False)
    monkeypatch.setattr(helper_model, "pipeline", lambda *args, **kwargs: built.append(kwargs) or "toxigen")

    judge_device.place_judges("cpu")
    assert helper_model.DetoxifyHelperModel().__dict__["_model"].device == "cpu"

    judge_device.place_judges("cuda")
    judge_device.place_judges("cuda")  # idempotent: wrapped once
    assert helper_model.DetoxifyHelperModel()._model.device == "cuda"
    assert helper_model.ToxigenHelperModel()._model == "toxigen"
    assert built == [{"model": helper_model.ToxigenHelperModel.TOXIGEN_MODEL_NAME, "device": "cuda"}]
    bertscore = helper_model.BertscoreHelperModel.__new__(helper_model.BertscoreHelperModel)
    bertscore.__dict__.update({"_evalops_metric": Metric(), "_bertscore": Metric(), "_model_type": "m"})
    assert bertscore.get_helper_scores("reference", "output") == 0.5
    assert computed == [{"predictions": ["output"], "references": ["reference"], "model_type": "m", "device": "cuda"}]
