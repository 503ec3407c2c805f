"""Run the benchmarks and print their numbers: `python -m benchmarks [--only NAME]... [--smoke]`.

- eval: the reference approach against `evalops run --local` at N = 200 (2 algorithms) and N = 1,000
  (3 algorithms), 50 ms latency, 8 requests at once (`--prompts N`: one comparison at N, 3 algorithms);
- robustness: a semantic-robustness algorithm's endpoint calls against the distinct prompts it needs;
- scale: the evaluate step at N = 10k and 100k with a 0 ms endpoint: wall time, calls, peak RSS, prompts/s;
- shards: the evaluate step sharded over K = 1, 2, 4 processes at N = 100k (0 ms endpoint), merged scores
  identical to K = 1, and a projection to 1M prompts x 10 models on SageMaker;
- cache: S3 requests of a re-run of 100k prompts over loose cache entries against segments (moto);
- rerun: endpoint calls of re-runs with the catalog unchanged and partly edited;
- synth: `cdk synth` and the definition build;
- validate: `evalops validate` on 60 models with each of the 12 algorithms, and on hostile configs;
- judges: records/s of fmeval's judge models (stand-ins of their real size) on the CPU, fmeval's way of
  calling them against ours, batched (`--judge-records N`: N records per judge), scores compared.
`--smoke` runs every selected benchmark at a few prompts with a 2 ms endpoint: the correctness checks
only (the test suite runs it); its timings mean nothing.

Exit status 1 when a correctness check fails (the two approaches' scores differ, or a call or request
count is not the exact number it must be); timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
from dataclasses import dataclass
from importlib.metadata import version

from pipeline_definitions.rendering.sagemaker_definition import SDK_CONFIG_LOGGER

# Before the sagemaker SDK is imported: its config logger prints to stdout unless it already has a level.
logging.getLogger(SDK_CONFIG_LOGGER).setLevel(logging.WARNING)

from benchmarks import (  # noqa: E402
    cache_bench,
    eval_bench,
    judge_bench,
    rerun_bench,
    robustness_bench,
    scale_bench,
    shard_bench,
    synth_bench,
    validate_bench,
)
from benchmarks.common import load_line, machine_line  # noqa: E402

BENCHMARKS = ("eval", "robustness", "scale", "shards", "cache", "rerun", "synth", "validate", "judges")


@dataclass(frozen=True)
class Sizes:
    """How large each benchmark runs."""

    eval_configurations: tuple[tuple[int, int], ...]
    robustness_prompts: int
    scale_prompts: tuple[int, ...]
    shard_prompts: int
    cache_prompts: int
    rerun_prompts: int
    latency_ms: float
    judges: judge_bench.JudgeSizes


FULL = Sizes(
    eval_configurations=eval_bench.CONFIGURATIONS,
    robustness_prompts=200,
    scale_prompts=scale_bench.DEFAULT_SIZES,
    shard_prompts=shard_bench.DEFAULT_PROMPTS,
    cache_prompts=100_000,
    rerun_prompts=1000,
    latency_ms=50.0,
    judges=judge_bench.FULL,
)
SMOKE = Sizes(
    eval_configurations=((12, 2),),
    robustness_prompts=10,
    scale_prompts=(30,),
    shard_prompts=40,
    cache_prompts=1_200,
    rerun_prompts=20,
    latency_ms=2.0,
    judges=judge_bench.SMOKE,
)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", action="append", choices=BENCHMARKS, help="Run only this benchmark (repeatable; default: all)."
    )
    parser.add_argument(
        "--smoke", action="store_true", help="A few prompts each, 2 ms endpoint: correctness checks only."
    )
    parser.add_argument(
        "--prompts", type=_positive_int, default=None, help="N for eval (3 algorithms) and rerun instead of theirs."
    )
    parser.add_argument(
        "--scale-prompts", type=_positive_int, action="append", default=None, help="N of the scale run (repeatable)."
    )
    parser.add_argument("--shard-prompts", type=_positive_int, default=None, help="N of the shards benchmark.")
    parser.add_argument("--cache-prompts", type=_positive_int, default=None, help="N of the cache benchmark.")
    parser.add_argument(
        "--judge-records", type=_positive_int, default=None, help="Records per judge of the judges run."
    )
    parser.add_argument(
        "--latency-ms", type=_positive_float, default=None, help="Endpoint latency per request (default 50)."
    )
    parser.add_argument(
        "--concurrency", type=_positive_int, default=8, help="Concurrent requests the endpoint serves (default 8)."
    )
    return parser.parse_args(argv)


def sizes_of(args: argparse.Namespace) -> Sizes:
    base = SMOKE if args.smoke else FULL
    return Sizes(
        eval_configurations=((args.prompts, 3),) if args.prompts else base.eval_configurations,
        robustness_prompts=base.robustness_prompts,
        scale_prompts=tuple(args.scale_prompts) if args.scale_prompts else base.scale_prompts,
        shard_prompts=args.shard_prompts or base.shard_prompts,
        cache_prompts=args.cache_prompts or base.cache_prompts,
        rerun_prompts=args.prompts or base.rerun_prompts,
        latency_ms=args.latency_ms or base.latency_ms,
        judges=base.judges.with_records(args.judge_records),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selected = args.only or list(BENCHMARKS)
    sizes = sizes_of(args)
    # The steps log every progress step at INFO; the benchmark prints its own numbers.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    print(f"machine: {machine_line()}; fmeval {version('fmeval')}, ray {version('ray')}")
    print(f"before: {load_line()}")
    if args.smoke:
        print("smoke mode: a few prompts each; only the correctness checks mean something")
    problems: list[str] = []
    if "eval" in selected:
        print()
        for result in eval_bench.run_configurations(sizes.eval_configurations, sizes.latency_ms, args.concurrency):
            problems += result.problems
    if "robustness" in selected:
        print()
        problems += robustness_bench.run(sizes.robustness_prompts).problems
    if "scale" in selected:
        print()
        problems += scale_bench.run(sizes.scale_prompts).problems
    if "shards" in selected:
        print()
        problems += shard_bench.run(sizes.shard_prompts).problems
    if "cache" in selected:
        print()
        problems += cache_bench.run(sizes.cache_prompts).problems
    if "rerun" in selected:
        print()
        problems += rerun_bench.run(sizes.rerun_prompts, sizes.latency_ms, args.concurrency).problems
    if "synth" in selected:
        print()
        try:
            synth_bench.run()
        except subprocess.CalledProcessError as exc:
            said = exc.stderr.decode(errors="replace").strip().splitlines() if exc.stderr else []
            problems.append(f"synth: {exc.cmd[0]} exited with status {exc.returncode}: {said[-1] if said else ''}")
    if "validate" in selected:
        print()
        problems += (validate_bench.run(unknown=1_000) if args.smoke else validate_bench.run()).problems
    if "judges" in selected:
        print()
        problems += judge_bench.run(sizes.judges).problems
    print()
    print(f"after: {load_line()}")
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
