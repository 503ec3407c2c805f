"""Which fine-tunings of a run share a SageMaker warm pool, and in which order they run to do so.

A training job that sets `KeepAlivePeriodInSeconds` keeps its instances for that long after it ends; the
next job that matches it (same role, instance type and count, image, network and volume settings) starts
on them instead of provisioning new ones. Within one run the role, network and volume settings are the
same for every job, and JumpStart picks the training image from the model id, its version and the
instance type. So the rule is: fine-tunings that set `keep_alive_period_in_seconds` above 0 and share the
base model id, model version, training instance type and instance count form one pool, and run one after
another in config order, each after the previous one ended. Other fine-tunings run in parallel as before.

An environment's `warm_pool_keep_alive_seconds` (configs/environments.yaml) gives a keep-alive to the
jobs of fine-tunings that set none; the plan is made from the config alone, so those are not ordered into
pools (each job keeps its own instances warm) and `plan` names them.

Only training jobs have warm pools: SageMaker offers none for processing jobs (every step of the pipeline
itself, including the Evaluate steps).
"""

from __future__ import annotations

from dataclasses import dataclass

from step_code.contract.config import Config

POOL_RULE = (
    "fine-tunings with keep_alive_period_in_seconds > 0 and the same base model id, model version, training "
    "instance type and count share a warm pool: they run one after another, in config order"
)


@dataclass(frozen=True)
class WarmPool:
    model_id: str
    model_version: str
    instance_type: str
    instance_count: int
    # Model names in the order their fine-tunings run.
    models: tuple[str, ...]
    # How long the pool stays after its last job: billed idle time.
    keep_alive_seconds: int

    @property
    def label(self) -> str:
        return f"{self.instance_type} x{self.instance_count} ({self.model_id} {self.model_version})"


def warm_pools(config: Config) -> tuple[WarmPool, ...]:
    """The run's warm pools, in the config order of their first fine-tuning."""
    groups: dict[tuple[str, str, str, int], list[tuple[str, int]]] = {}
    for model in config.models:
        parameters = model.finetuning.parameters if model.finetuning is not None else None
        keep_alive = parameters.keep_alive_period_in_seconds if parameters is not None else None
        if parameters is None or not keep_alive:
            continue
        key = (model.model_id or "", model.model_version, parameters.instance_type, parameters.num_instances)
        groups.setdefault(key, []).append((model.name, keep_alive))
    return tuple(
        WarmPool(
            model_id=key[0],
            model_version=key[1],
            instance_type=key[2],
            instance_count=key[3],
            models=tuple(name for name, _ in members),
            keep_alive_seconds=members[-1][1],
        )
        for key, members in groups.items()
    )


def unset_keep_alive(config: Config) -> tuple[str, ...]:
    """The models whose fine-tuning sets no keep-alive: an environment's default may apply to their jobs."""
    return tuple(
        model.name
        for model in config.models
        if model.finetuning is not None and model.finetuning.parameters.keep_alive_period_in_seconds is None
    )


def previous_in_pool(config: Config) -> dict[str, str]:
    """Model name -> the model whose fine-tuning must end before its own starts (to take over the pool)."""
    return {
        later: earlier
        for pool in warm_pools(config)
        for earlier, later in zip(pool.models, pool.models[1:], strict=False)
    }
