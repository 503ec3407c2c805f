"""The process-wide fmeval set-up: Ray's data layer imports, judge hooks load or fail clearly, BERTScore is deferred."""

from __future__ import annotations

import pytest

from step_code import fmeval_runtime


def test_ray_data_imports_with_the_pinned_pyarrow() -> None:
    import pyarrow
    import ray.data

    assert int(pyarrow.__version__.split(".")[0]) < 26
    assert ray.data.Dataset.__name__ == "Dataset"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon_here", "is not of the form module:function"),
        ("tests.step_code.evaluate.no_such_module:install", "cannot load"),
        ("tests.step_code.evaluate.judge_standin:missing", "cannot load"),
        ("tests.step_code.evaluate.judge_standin:TokenOverlapJudge.score", "cannot load"),
    ],
)
def test_bad_judge_hooks_fail_in_one_line(spec: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fmeval_runtime.JUDGE_MODELS_ENV, spec)
    with pytest.raises(fmeval_runtime.JudgeHookError, match=message) as caught:
        fmeval_runtime.install_judge_models()
    assert fmeval_runtime.JUDGE_MODELS_ENV in str(caught.value) and "\n" not in str(caught.value)


def test_hooks_report_the_judges_they_provide(standin_judges: None) -> None:
    assert fmeval_runtime.install_judge_models() == frozenset({"bertscore"})


def test_bertscore_is_loaded_on_first_use_not_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fmeval_runtime.JUDGE_MODELS_ENV, raising=False)
    fmeval_runtime.install_judge_models()
    from fmeval.eval_algorithms.helper_models.helper_model import BertscoreHelperModel, hf_evaluate

    loads: list[str] = []

    def load(name: str) -> str:
        loads.append(name)
        return f"metric {name}"

    monkeypatch.setattr(hf_evaluate, "load", load)
    model = BertscoreHelperModel("microsoft/deberta-xlarge-mnli")
    assert loads == []
    assert model._bertscore == "metric bertscore" and model._bertscore == "metric bertscore"
    assert loads == ["bertscore"]
    assert BertscoreHelperModel.__reduce__(model) == (BertscoreHelperModel, ("microsoft/deberta-xlarge-mnli",))


def test_ray_gets_at_least_two_cpus() -> None:
    assert fmeval_runtime.ray_cpus() >= 2
