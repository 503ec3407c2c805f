"""Fine-tunings that can share a warm pool run one after another; the plan says so and the estimate bills it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline_definitions.cli.main import main
from pipeline_definitions.estimating import estimate as est
from pipeline_definitions.loading.loader import load_config
from pipeline_definitions.planning.plan import build_plan
from pipeline_definitions.planning.warm_pools import unset_keep_alive, warm_pools
from pipeline_definitions.rendering.sagemaker_definition import render_definition
from step_code.contract.config import Config
from step_code.contract.job_env import JobGuardrails
from step_code.resource_guardrails import warm_pool_keep_alive
from tests.pipeline_definitions.conftest import WriteConfig
from tests.pipeline_definitions.rendering.conftest import targets_for

BASE = "meta-textgeneration-llama-2-7b"


def tuned(name: str, instance_type: str, keep_alive: int | None, **extra: Any) -> dict[str, Any]:
    parameters: dict[str, Any] = {"instance_type": instance_type, "epoch": 1}
    if keep_alive is not None:
        parameters["keep_alive_period_in_seconds"] = keep_alive
    return {
        "name": name,
        "model_id": extra.pop("model_id", BASE),
        "deployment_config": {"instance_type": "ml.g5.2xlarge"},
        "finetuning": {"train_data_path": f"s3://data/{name}/", "parameters": parameters},
        "evaluation_config": {"output": "[0].generated_text"},
        **extra,
    }


CONFIG: dict[str, Any] = {
    "pipeline": {"name": "pools"},
    "dataset": {
        "dataset_name": "d",
        "input_data_location": "s3://data/trivia.jsonl",
        "model_input_key": "q",
        "target_output_key": "a",
    },
    "models": [
        tuned("a", "ml.g5.12xlarge", 1800),
        tuned("other-instance", "ml.g5.24xlarge", 1800),
        tuned("b", "ml.g5.12xlarge", 600),
        tuned("no-pool", "ml.g5.12xlarge", None),
        tuned("other-base", "ml.g5.12xlarge", 1800, model_id="meta-textgeneration-llama-2-13b"),
        tuned("c", "ml.g5.12xlarge", 900),
    ],
    "model_registry": {"model_package_group_name": "g"},
    "algorithms": [{"algorithm": "FactualKnowledge"}],
}


def test_fine_tunings_sharing_a_pool_run_in_config_order_and_the_others_in_parallel() -> None:
    config = Config.model_validate(CONFIG)
    pools = warm_pools(config)
    assert [(p.instance_type, p.model_id, p.models, p.keep_alive_seconds) for p in pools] == [
        ("ml.g5.12xlarge", BASE, ("a", "b", "c"), 900),
        ("ml.g5.24xlarge", BASE, ("other-instance",), 1800),
        ("ml.g5.12xlarge", "meta-textgeneration-llama-2-13b", ("other-base",), 1800),
    ]
    plan = build_plan(config)
    assert plan.step("Finetune-a").depends_on == ()
    assert plan.step("Finetune-b").depends_on == ("Finetune-a",)
    assert plan.step("Finetune-c").depends_on == ("Finetune-b",)
    for alone in ("other-instance", "no-pool", "other-base"):
        assert plan.step(f"Finetune-{alone}").depends_on == ()


def test_without_keep_alive_nothing_is_ordered() -> None:
    data = copy.deepcopy(CONFIG)
    for model in data["models"]:
        model["finetuning"]["parameters"].pop("keep_alive_period_in_seconds", None)
    config = Config.model_validate(data)
    assert warm_pools(config) == ()
    assert all(not step.after for step in build_plan(config).processing_steps if step.kind == "finetune")


@pytest.mark.parametrize("value", [-1, 3601])
def test_keep_alive_is_bounded_as_sagemaker_bounds_it(value: int) -> None:
    data = copy.deepcopy(CONFIG)
    data["models"][0]["finetuning"]["parameters"]["keep_alive_period_in_seconds"] = value
    with pytest.raises(ValueError, match="keep_alive_period_in_seconds"):
        Config.model_validate(data)


def test_the_estimate_bills_the_idle_pool_after_its_last_fine_tuning(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(yaml.safe_dump(CONFIG))
    loaded = load_config(path)
    estimate = est.estimate_run(loaded, 100)
    rows = {row.model: row for row in estimate.models}
    assert rows["c"].warm_pool_idle_instance_hours == pytest.approx(900 / 3600)
    assert rows["other-instance"].warm_pool_idle_instance_hours == pytest.approx(1800 / 3600)
    for handed_on in ("a", "b", "no-pool"):
        assert rows[handed_on].warm_pool_idle_instance_hours == 0
    assert rows["c"].training_instance_hours == pytest.approx(rows["a"].training_instance_hours + 0.25)
    assert any("warm pool" in assumption for assumption in estimate.assumptions)

    assert main(["plan", str(path), "--prompts", "100"]) == 0
    out = capsys.readouterr().out
    assert "Warm pools (fine-tunings with keep_alive_period_in_seconds > 0 and the same base model id" in out
    assert f"ml.g5.12xlarge x1 ({BASE} *): Finetune-a -> Finetune-b -> Finetune-c; kept 900 s after the last" in out
    assert "processing steps (preprocess, deploy, evaluate, select, register, cleanup) cannot use warm pools" in out
    # Without --env the plan knows only the config: where a fine-tuning sets no keep-alive, an environment's may apply.
    assert "  no-pool: no keep_alive_period_in_seconds; an environment's warm_pool_keep_alive_seconds may apply" in out
    assert "inst-hours include 0.25 of idle warm pool after its fine-tuning" in out


def test_a_plan_without_pools_still_says_where_an_environment_default_may_apply(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    data = copy.deepcopy(CONFIG)
    data["models"] = [tuned("x", "ml.g5.12xlarge", None), tuned("y", "ml.g5.12xlarge", 0)]
    assert unset_keep_alive(Config.model_validate(data)) == ("x",)
    assert main(["plan", str(write_config(yaml.safe_dump(data))), "--prompts", "10"]) == 0
    out = capsys.readouterr().out
    unset_lines = [line for line in out.splitlines() if "no keep_alive_period_in_seconds" in line]
    # y sets 0 (no warm pool) itself: only x is named.
    assert len(unset_lines) == 1
    assert unset_lines[0].startswith("  x: no keep_alive_period_in_seconds; an environment's warm_pool_keep_alive")


def test_the_estimate_counts_the_environment_default_with_the_training_jobs_precedence() -> None:
    """A fine-tuning's own keep-alive (0 too) wins; one that sets none gets the environment's, as its job does."""
    data = copy.deepcopy(CONFIG)
    data["models"].append(tuned("zero", "ml.g5.48xlarge", 0))
    data["models"].append(tuned("two-instances", "ml.g5.12xlarge", None))
    data["models"][-1]["finetuning"]["parameters"]["num_instances"] = 2
    config = Config.model_validate(data)
    environment = JobGuardrails(warm_pool_keep_alive_seconds=600)
    idle = est.warm_pool_idle_seconds(config, environment)
    assert idle == {
        "a": 0,
        "b": 0,
        "c": 900,
        "other-instance": 1800,
        "other-base": 1800,
        "no-pool": 600,
        "zero": 0,
        "two-instances": 600,
    }
    # Exactly the KeepAlivePeriodInSeconds the finetune step requests, for every job that is not handed on.
    for model in config.models:
        assert model.finetuning is not None
        requested = warm_pool_keep_alive(environment, model.finetuning.parameters.keep_alive_period_in_seconds)
        assert idle[model.name] in (0, requested or 0)
        assert model.name in ("a", "b") or idle[model.name] == (requested or 0)
    # Without an environment default nothing else is idle.
    assert est.warm_pool_idle_seconds(config, JobGuardrails())["no-pool"] == 0


def test_plan_with_an_environment_prices_its_warm_pool_default(
    write_config: WriteConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(yaml.safe_dump(CONFIG))
    environments = tmp_path / "environments.yaml"
    environments.write_text(
        yaml.safe_dump(
            {
                "environments": [
                    {"name": "dev", "config": str(path)},
                    {"name": "prod", "config": str(path), "warm_pool_keep_alive_seconds": 1200},
                ]
            }
        ),
        encoding="utf-8",
    )
    loaded = load_config(path)
    without = {row.model: row for row in est.estimate_run(loaded, 100).models}
    assert without["no-pool"].warm_pool_idle_instance_hours == 0

    assert main(["plan", str(path), "--prompts", "100", "--env", "prod", "--environments", str(environments)]) == 0
    out = capsys.readouterr().out
    assert (
        "  no-pool: no keep_alive_period_in_seconds; environment prod's warm_pool_keep_alive_seconds applies: each "
        "job keeps its instances 1200 s after it ends, billed idle and counted in the estimate" in out
    )
    row = next(line for line in out.splitlines() if line.startswith("  no-pool "))
    cost = float(row.split()[-1].lstrip("$").replace(",", ""))
    with_default = {
        r.model: r for r in est.estimate_run(loaded, 100, JobGuardrails(warm_pool_keep_alive_seconds=1200)).models
    }
    assert with_default["no-pool"].warm_pool_idle_instance_hours == pytest.approx(1200 / 3600)
    assert with_default["no-pool"].usd == pytest.approx(cost, abs=0.006)
    assert with_default["no-pool"].training_usd > (without["no-pool"].training_usd or 0)
    assert "inst-hours include 0.33 of idle warm pool after its fine-tuning" in out

    assert main(["plan", str(path), "--prompts", "100", "--env", "dev", "--environments", str(environments)]) == 0
    assert "  no-pool: no keep_alive_period_in_seconds; environment dev sets no warm-pool default" in (
        capsys.readouterr().out
    )


def test_the_pipeline_definition_orders_the_pool_sharing_fine_tunings() -> None:
    config = Config.model_validate(CONFIG)
    definition = json.loads(render_definition(build_plan(config), config, targets_for(config)))
    depends = {step["Name"]: step.get("DependsOn", []) for step in definition["Steps"]}
    assert depends["Finetune-b"] == ["Finetune-a"] and depends["Finetune-c"] == ["Finetune-b"]
    assert depends["Finetune-a"] == [] and depends["Finetune-other-instance"] == []
