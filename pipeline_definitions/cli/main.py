"""`evalops`: check a config and show what a run would do and cost, without AWS.

User errors print one line per problem and exit 2; an unexpected error prints one line and exits 1
(set EVALOPS_DEBUG=1 for the traceback); a SageMaker SDK defaults file given as the config prints one line
saying what it is and exits 4. Only light modules are imported: no torch, ray or fmeval.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline_definitions.cli.common import (
    EXIT_INTERNAL_ERROR,
    EXIT_OK,
    EXIT_SDK_DEFAULTS_FILE,
    EXIT_USER_ERROR,
    add_catalog_dir,
)
from pipeline_definitions.cli.deployed import DEFAULT_ENVIRONMENTS_FILE
from pipeline_definitions.cli.guardrail_lines import EnvironmentGuardrails, environment_guardrails, guardrail_lines
from pipeline_definitions.cli.run import add_run_commands
from pipeline_definitions.cli.scale_lines import scale_lines
from pipeline_definitions.estimating.estimate import RunEstimate, count_prompts, estimate_run
from pipeline_definitions.loading.finetuning_data import channel_files
from pipeline_definitions.loading.loader import ConfigError, LoadedConfig, SdkDefaultsFileError, load_config
from pipeline_definitions.loading.validation import WORST_CASE_EXECUTION_ID, WORST_CASE_RESOURCE_PREFIX
from pipeline_definitions.planning.plan import (
    CHECK_STEP,
    FAIL_STEP,
    REGISTER_STEP,
    EvaluationPlan,
    build_plan,
    step_name,
)
from pipeline_definitions.planning.warm_pools import POOL_RULE, unset_keep_alive, warm_pools
from step_code.contract import algorithms
from step_code.contract.config import Config, ModelConfig
from step_code.contract.locations import is_s3
from step_code.contract.naming import (
    EXECUTION_SUFFIX_LENGTH,
    deployed_pipeline_name,
    kept_endpoint_name,
    kept_endpoint_stem,
    resource_base,
    run_scoped_name,
)
from step_code.contract.pricing import price_table
from step_code.contract.tags import TAG_LAST_USED, TAG_SUPERSEDED_BY

DEBUG_ENV = "EVALOPS_DEBUG"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _load(args: argparse.Namespace) -> LoadedConfig:
    loaded = load_config(args.config, catalog_dir=args.catalog_dir)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return loaded


def _prompt_text(count: int | None, loaded: LoadedConfig) -> str:
    if count is not None:
        return _plural(count, "prompt")
    return f"prompt count unknown (dataset at {loaded.dataset_location})"


def cmd_validate(args: argparse.Namespace) -> int:
    loaded = _load(args)
    config = loaded.config
    summary = ", ".join(
        [
            _plural(len(config.models), "model"),
            _plural(len(config.algorithms), "algorithm"),
            _prompt_text(count_prompts(loaded), loaded),
        ]
    )
    print(f"OK: {args.config}: {summary}")
    return EXIT_OK


def _endpoint_names(config: Config, model: ModelConfig) -> list[str]:
    """The endpoint name a run creates, and its shortened form when the resource prefix is long.

    Bases are valid SageMaker names already, so run_scoped_name keeps them as they are unless it must cut.
    """
    base = resource_base(config.pipeline.name, model)
    names = [f"<prefix>{base}-<execution-id>"]
    longest = run_scoped_name(WORST_CASE_RESOURCE_PREFIX, base, WORST_CASE_EXECUTION_ID)
    if base not in longest:
        cut = longest[len(WORST_CASE_RESOURCE_PREFIX) : -(EXECUTION_SUFFIX_LENGTH + 1)]
        names.append(f"<prefix>{cut}-<execution-id> (cut and hashed to fit 63 characters, with a 24-character prefix)")
    return names


def _plan_lines(plan: EvaluationPlan) -> list[str]:
    steps = plan.processing_steps
    width = max(len(step.name) for step in steps)
    type_width = max(len(step.instance_type) for step in steps)
    lines = [f"Steps, in order (at most {plan.max_parallel_steps} run at once):"]
    for step in steps:
        after = f"  after {', '.join(step.depends_on)}" if step.depends_on else ""
        lines.append(f"  {step.name:<{width}}  {step.kind:<10}  {step.instance_type:<{type_width}}{after}".rstrip())
        if step.name == plan.select.name:
            lines.append(
                f"  {CHECK_STEP:<{width}}  condition   decision meets the selection policy: {REGISTER_STEP}, "
                f"else {FAIL_STEP} (the run fails)"
            )
    lines.append("")
    lines.append("Branches (one per model, in parallel):")
    for branch in plan.branches:
        lines.append(f"  {branch.model}: {' -> '.join(step.name for step in branch.steps)}")
    return lines


def _kept_endpoint_lines(config: Config, model: ModelConfig, shape: str) -> list[str]:
    retrained = (
        "; a fine-tuning is trained again (and so deployed anew) only when its inputs or data change"
        if model.finetuning is not None
        else ""
    )
    expiry = (
        f"a kept endpoint is deleted by the safety net's hourly sweep {model.keep_for_hours:g} h after the end of "
        "the last run that used it (never while a run uses it) and deployed again by the next run that needs it "
        "(keep_for_hours)"
        if model.keep_for_hours is not None
        else "kept endpoints, current or superseded, are billed until you delete them (or set keep_for_hours)"
    )
    return [
        f"  {model.name}: {shape}, KEPT and reused by later runs (cleanup_endpoint: false)",
        f"    <prefix>{resource_base(config.pipeline.name, model)}-k<deployment identity>",
        "    the identity is the model id and resolved version, image, weights (a fine-tune's trained artifact), "
        "instance type and count; a run that resolves another one deploys a new endpoint and reports the old one "
        f"as superseded; {expiry}{retrained}",
    ]


def _kept_in_account_lines(config: Config, resource_prefix: str) -> list[str]:
    """This config's kept endpoints found under the prefix, with the identity a later run superseded."""
    from step_code.aws_resources import sagemaker_client
    from step_code.deploy import kept_endpoints

    client = sagemaker_client()
    pipeline = deployed_pipeline_name(resource_prefix, config.pipeline.name)
    lines = [f"Kept endpoints in the account under {resource_prefix}:"]
    for model in config.models:
        if not model.deploys_endpoint or model.cleanup_endpoint:
            continue
        # Every identity gives a suffix of the same length: any digest finds the stem.
        any_identity = "0" * 64
        stem = kept_endpoint_stem(
            kept_endpoint_name(resource_prefix, resource_base(config.pipeline.name, model), any_identity)
        )
        for kept in kept_endpoints(client, stem, model.name, pipeline):
            superseded = kept.tags.get(TAG_SUPERSEDED_BY)
            state = f"SUPERSEDED by {superseded}" if superseded else "current"
            last_used = kept.tags.get(TAG_LAST_USED, "unknown")
            lines.append(f"  {model.name}: {kept.name}  {state}, last used {last_used}")
    if len(lines) == 1:
        lines.append("  none")
    return lines


def _endpoint_lines(loaded: LoadedConfig) -> list[str]:
    lines = ["Endpoints:"]
    for model in loaded.config.models:
        if model.deploys_endpoint and model.deployment_config is not None:
            deployment = model.deployment_config
            shape = f"{deployment.instance_type} x{deployment.num_instances}"
            if not model.cleanup_endpoint:
                lines += _kept_endpoint_lines(loaded.config, model, shape)
                continue
            names = _endpoint_names(loaded.config, model)
            lines.append(f"  {model.name}: {shape}, deleted by Cleanup-{model.name} after its evaluation")
            lines.append(f"    {names[0]}")
            lines += [f"    or {name}" for name in names[1:]]
        elif model.provider.existing_endpoint:
            lines.append(f"  {model.name}: uses the existing endpoint {model.endpoint_name} (never deleted)")
    if len(lines) == 1:
        lines.append("  none: no model deploys an endpoint")
    else:
        lines.append("  <prefix> is the environment's resource prefix; endpoints that existed before are never deleted")
    return lines


def _unset_keep_alive_line(unset: tuple[str, ...], resolved: EnvironmentGuardrails | None) -> str:
    models = f"  {', '.join(unset)}: no keep_alive_period_in_seconds; "
    if resolved is None:
        return (
            models + "an environment's warm_pool_keep_alive_seconds may apply (plan --env NAME counts it in the "
            "estimate; these jobs are not ordered to share a pool)"
        )
    default = resolved.guardrails.definition.resources.warm_pool_keep_alive_seconds
    if not default:
        return models + f"environment {resolved.environment.name} sets no warm-pool default: no warm pool"
    return (
        models + f"environment {resolved.environment.name}'s warm_pool_keep_alive_seconds applies: each job keeps "
        f"its instances {default} s after it ends, billed idle and counted in the estimate (these jobs are not "
        "ordered to share a pool)"
    )


def _warm_pool_lines(config: Config, resolved: EnvironmentGuardrails | None) -> list[str]:
    pools, unset = warm_pools(config), unset_keep_alive(config)
    if not pools and not unset:
        return []
    lines = [f"Warm pools ({POOL_RULE}):"]
    for pool in pools:
        order = " -> ".join(step_name("finetune", config.model(name)) for name in pool.models)
        lines.append(f"  {pool.label}: {order}; kept {pool.keep_alive_seconds} s after the last, billed idle")
    if unset:
        lines.append(_unset_keep_alive_line(unset, resolved))
    lines.append("  processing steps (preprocess, deploy, evaluate, select, register, cleanup) cannot use warm pools")
    return lines


def _money(value: float) -> str:
    return f"${value:,.2f}"


def _estimate_lines(estimate: RunEstimate, loaded: LoadedConfig) -> list[str]:
    table = price_table()
    if estimate.prompt_count is not None:
        basis = f"{estimate.prompt_count:,} prompts"
    else:
        basis = f"{estimate.prompts:,} prompts (prompt count unknown: dataset at {loaded.dataset_location})"
    lines = [
        f"Estimate for {basis}, at on-demand list prices for {table.region} as of {estimate.price_table_as_of} "
        "(override them in pricing.instance_usd_per_hour):",
        f"  {'model':<28} {'endpoint':<22} {'calls':>8} {'deploy':>8} {'evaluate':>9} {'finetune':>9}"
        f" {'inst-hours':>10} {'cost':>10}",
    ]
    for row in estimate.models:
        endpoint = f"{row.instance_type} x{row.instance_count}" if row.instance_type else "-"
        deploy = f"{row.deploy_minutes:.0f} min" if row.instance_type else "-"
        finetune = f"{row.training_hours:.1f} h" if row.training_instance_type else "-"
        cost = _money(row.usd) + ("" if row.priced else "+?")
        lines.append(
            f"  {row.model:<28} {endpoint:<22} {row.model_calls:>8,} {deploy:>8} "
            f"{row.evaluation_minutes:>5.1f} min {finetune:>9} {row.instance_hours:>10.2f} {cost:>10}"
        )
        if row.warm_pool_idle_instance_hours:
            lines.append(
                f"  {'':<28} inst-hours include {row.warm_pool_idle_instance_hours:.2f} of idle warm pool after "
                "its fine-tuning"
            )
        if row.kept_endpoint_usd_per_hour is not None:
            kept = _money(row.kept_endpoint_usd_per_hour)
            lines.append(f"  {'':<28} then {kept} per hour for as long as the endpoint is kept")
    steps_text = _plural(len(estimate.steps), "job")
    lines.append(
        f"  {'processing jobs':<28} {steps_text:<22} {'':>8} {'':>8} {'':>9} {'':>9} "
        f"{estimate.processing_instance_hours:>10.2f} {_money(estimate.processing_usd):>10}"
    )
    lines.append(f"  total: {estimate.instance_hours:.2f} instance-hours, {_money(estimate.total_usd)}")
    lines.append("Assumptions:")
    lines += [f"  - {assumption}" for assumption in estimate.assumptions]
    if estimate.warnings:
        lines.append("Price warnings (costs marked +? leave these out):")
        lines += [f"  - {warning}" for warning in estimate.warnings]
    return lines


def _download_lines(loaded: LoadedConfig) -> list[str]:
    lines = []
    for item in loaded.config.algorithms:
        spec = algorithms.lookup(item.algorithm)
        if spec.download:
            lines.append(f"  {spec.algorithm}: {spec.download}")
    return ["Run-time downloads (baked into the step image):", *lines] if lines else []


def _registry_lines(plan: EvaluationPlan) -> list[str]:
    lines = ["Model registry (the winner is registered in its group; the Registry stack creates every group):"]
    for group in plan.registry_groups:
        models = ", ".join(group.models) if group.models else "no model registers here"
        origin = (
            " (named after pipeline.name: the config has no model_registry; set model_registry to choose)"
            if group.named_after_pipeline
            else ""
        )
        lines.append(f"  {group.name}: {models}{origin}")
    return lines


def _training_channel_lines(plan: EvaluationPlan, loaded: LoadedConfig) -> list[str]:
    if not plan.training_channels:
        return []
    relative = any(not is_s3(item.location) for item in plan.training_channels)
    where = f" (relative paths are in the uploaded prompt catalog, {loaded.catalog_dir})" if relative else ""
    lines = [f"Fine-tuning channels{where}:"]
    for item in plan.training_channels:
        finetuning = loaded.config.model(item.model).finetuning
        files = channel_files(loaded.catalog_dir, finetuning, item.key) if finetuning is not None else []
        held = f" (holds {', '.join(files)})" if files else ""
        lines.append(f"  {item.model}: {item.channel} <- {item.location}{held}")
    return lines


def _no_environment_lines() -> list[str]:
    return [
        "Guardrails: no environment given; plan --env NAME shows its VPC, network isolation, volume and output "
        "keys, extra tags and permissions boundary (configs/environments.yaml and its sagemaker_defaults file)"
    ]


def cmd_plan(args: argparse.Namespace) -> int:
    loaded = _load(args)
    resolved = environment_guardrails(args.environments, args.env, loaded) if args.env is not None else None
    prompt_count = args.prompts if args.prompts is not None else count_prompts(loaded)
    plan = build_plan(loaded.config)
    resources = resolved.guardrails.definition.resources if resolved is not None else None
    sections = [
        [
            f"Plan for {args.config}: pipeline {plan.pipeline_name}, config sha256 {loaded.config_sha256[:12]}, "
            f"{_prompt_text(prompt_count, loaded)}"
        ],
        _plan_lines(plan),
        _endpoint_lines(loaded),
        _registry_lines(plan),
        _training_channel_lines(plan, loaded),
        guardrail_lines(resolved) if resolved is not None else _no_environment_lines(),
        _warm_pool_lines(loaded.config, resolved),
        _kept_in_account_lines(loaded.config, args.kept_endpoints) if args.kept_endpoints else [],
        _estimate_lines(estimate_run(loaded, prompt_count, resources), loaded),
        [loaded.auto_shards] if loaded.auto_shards else [],
        scale_lines(loaded.config),
        _download_lines(loaded),
    ]
    print("\n\n".join("\n".join(section) for section in sections if section))
    return EXIT_OK


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalops", description="LLM evaluation on AWS from one YAML config.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("config", metavar="CONFIG", help="evaluation config, e.g. configs/sample.yaml")
        add_catalog_dir(sub)
        return sub

    validate = config_command("validate", "Check a config; print every problem, one line each.")
    validate.set_defaults(handler=cmd_validate)
    plan = config_command("plan", "Show the steps, endpoints and estimated cost of a run.")
    plan.add_argument(
        "--prompts",
        type=_positive_int,
        default=None,
        help="prompt count to estimate for (default: counted in the local catalog, else per 1,000)",
    )
    plan.add_argument(
        "--kept-endpoints",
        metavar="PREFIX",
        default=None,
        help="also list this config's kept endpoints under the environment's resource prefix (e.g. evalops-dev-), "
        "current or superseded, with the AWS credentials of this shell",
    )
    plan.add_argument(
        "--env",
        metavar="NAME",
        default=None,
        help="show this environment's guardrails (VPC, network isolation, keys, extra tags, permissions boundary) "
        "and count its warm-pool default in the estimate",
    )
    plan.add_argument(
        "--environments",
        type=Path,
        default=DEFAULT_ENVIRONMENTS_FILE,
        help="environments file for --env (default: configs/environments.yaml; its paths are relative to the "
        "current folder, the repository root)",
    )
    plan.set_defaults(handler=cmd_plan)
    add_run_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        exit_code: int = args.handler(args)
    except SdkDefaultsFileError as exc:
        print(exc.problems[0], file=sys.stderr)
        return EXIT_SDK_DEFAULTS_FILE
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(
            f"evalops: internal error: {exc.__class__.__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR
    return exit_code
