"""Judge-model settings: a GPU evaluate instance or a judge batch size is refused when no configured algorithm
has a judge model; the batch size defaults to 64 and a model's own overrides the pipeline's."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pipeline_definitions.loading.validation import validate
from step_code.contract.config import Config


def _config(algorithm: str, pipeline: dict[str, Any] | None = None, evaluation: dict[str, Any] | None = None) -> Config:
    return Config.model_validate(
        {
            "pipeline": {"name": "judges", **(pipeline or {})},
            "dataset": {
                "dataset_name": "d",
                "input_data_location": "d.jsonl",
                "model_input_key": "q",
                "target_output_key": "a",
            },
            "models": [
                {
                    "name": "m",
                    "model_provider": "http",
                    "endpoint_url": "http://127.0.0.1:9/generate",
                    "evaluation_config": evaluation or {},
                }
            ],
            "algorithms": [{"algorithm": algorithm}],
        }
    )


@pytest.mark.parametrize(
    ("instance_type", "algorithm", "refused"),
    [
        ("ml.g6.xlarge", "FactualKnowledge", True),
        ("ml.g5.2xlarge", "Toxicity", False),
        ("ml.g5.2xlarge", "QAAccuracy", False),
        ("ml.m5.xlarge", "FactualKnowledge", False),
    ],
)
def test_a_gpu_evaluate_instance_needs_a_judge_model(instance_type: str, algorithm: str, refused: bool) -> None:
    every_finding = validate(_config(algorithm, {"evaluation_instance_type": instance_type}))
    # The default judge batch size is no setting of the user's: never reported.
    assert [f for f in every_finding if f.loc[-1] == "judge_batch_size"] == []
    findings = [f for f in every_finding if f.loc == ("pipeline", "evaluation_instance_type")]
    if refused:
        (finding,) = findings
        assert finding.message == (
            f"{instance_type} is a GPU instance, but no configured algorithm scores with a judge model "
            "(BERTScore, Detoxify or ToxiGen): the GPU would sit idle; use a CPU type such as ml.m5.xlarge"
        )
    else:
        assert findings == []


@pytest.mark.parametrize(
    ("algorithm", "refused"), [("FactualKnowledge", True), ("QAAccuracy", False), ("Toxicity", False)]
)
def test_a_judge_batch_size_needs_a_judge_model(algorithm: str, refused: bool) -> None:
    config = _config(algorithm, {"judge_batch_size": 128}, {"judge_batch_size": 16})
    findings = [f for f in validate(config) if f.loc[-1] == "judge_batch_size"]
    if refused:
        assert [f.loc for f in findings] == [
            ("pipeline", "judge_batch_size"),
            ("models", 0, "evaluation_config", "judge_batch_size"),
        ]
        assert findings[0].message.startswith("no configured algorithm scores with a judge model")
    else:
        assert findings == []


def test_judge_batch_size_defaults_to_the_devices_and_a_model_overrides_the_pipeline() -> None:
    from step_code.judge_batching import JudgeSettings

    config = _config("QAAccuracy")
    assert config.models[0].judge_batch_size(config.pipeline) is None
    assert JudgeSettings.on("cpu", None) == JudgeSettings(16, "cpu")
    assert JudgeSettings.on("cuda", None) == JudgeSettings(64, "cuda")
    assert JudgeSettings.on("cuda", 8) == JudgeSettings(8, "cuda")
    config = _config("QAAccuracy", {"judge_batch_size": 128})
    assert config.models[0].judge_batch_size(config.pipeline) == 128
    config = _config("QAAccuracy", {"judge_batch_size": 128}, {"judge_batch_size": 8})
    assert config.models[0].judge_batch_size(config.pipeline) == 8
    for bad in (0, 5000, "many"):
        with pytest.raises(ValidationError, match="judge_batch_size"):
            _config("QAAccuracy", evaluation={"judge_batch_size": bad})
