"""Run the benchmarks and print their numbers: `python -m benchmarks [--only eval|rerun|synth] [--prompts N]`.

Exit status 1 when a correctness check fails (the two approaches' scores differ, or a call count is not
the exact number it must be); timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
from importlib.metadata import version

from pipeline_definitions.rendering.sagemaker_definition import SDK_CONFIG_LOGGER

# Before the sagemaker SDK is imported: its config logger prints to stdout unless it already has a level.
logging.getLogger(SDK_CONFIG_LOGGER).setLevel(logging.WARNING)

from benchmarks import eval_bench, rerun_bench, synth_bench  # noqa: E402
from benchmarks.common import load_line, machine_line  # noqa: E402

BENCHMARKS = ("eval", "rerun", "synth")


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
    parser.add_argument("--prompts", type=_positive_int, default=1000, help="Prompts N (default 1000).")
    parser.add_argument(
        "--latency-ms", type=_positive_float, default=50.0, help="Endpoint latency per request (default 50)."
    )
    parser.add_argument(
        "--concurrency", type=_positive_int, default=8, help="Concurrent requests the endpoint serves (default 8)."
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selected = args.only or list(BENCHMARKS)
    # The steps log every progress step at INFO; the benchmark prints its own numbers.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    print(f"machine: {machine_line()}; fmeval {version('fmeval')}, ray {version('ray')}")
    print(f"before: {load_line()}")
    problems: list[str] = []
    if "eval" in selected:
        print()
        problems += eval_bench.run(args.prompts, args.latency_ms, args.concurrency).problems
    if "rerun" in selected:
        print()
        problems += rerun_bench.run(args.prompts, args.latency_ms, args.concurrency).problems
    if "synth" in selected:
        print()
        try:
            synth_bench.run()
        except subprocess.CalledProcessError as exc:
            said = exc.stderr.decode(errors="replace").strip().splitlines() if exc.stderr else []
            problems.append(f"synth: {exc.cmd[0]} exited with status {exc.returncode}: {said[-1] if said else ''}")
    print()
    print(f"after: {load_line()}")
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
