"""A GPU evaluate instance is refused when no configured algorithm has a judge model to run on it."""

from __future__ import annotations

import pytest

from pipeline_definitions.loading.validation import validate
from step_code.contract.config import Config


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
    config = Config.model_validate(
        {
            "pipeline": {"name": "gpu", "evaluation_instance_type": instance_type},
            "dataset": {
                "dataset_name": "d",
                "input_data_location": "d.jsonl",
                "model_input_key": "q",
                "target_output_key": "a",
            },
            "models": [{"name": "m", "model_provider": "http", "endpoint_url": "http://127.0.0.1:9/generate"}],
            "algorithms": [{"algorithm": algorithm}],
        }
    )
    every_finding = validate(config)
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
    config = Config.model_validate(
        {
            "pipeline": {"name": "judges", "judge_batch_size": 128},
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
                    "evaluation_config": {"judge_batch_size": 16},
                }
            ],
            "algorithms": [{"algorithm": algorithm}],
        }
    )
    findings = [f for f in validate(config) if f.loc[-1] == "judge_batch_size"]
    if refused:
        assert [f.loc for f in findings] == [
            ("pipeline", "judge_batch_size"),
            ("models", 0, "evaluation_config", "judge_batch_size"),
        ]
        assert findings[0].message.startswith("no configured algorithm scores with a judge model")
    else:
        assert findings == []
