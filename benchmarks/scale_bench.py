"""Scale: our evaluate step at large N against a fast local endpoint (0 ms latency).

For each N the prompt catalog is preprocessed in this process, then the evaluate step runs in a child
process of its own (`python -m benchmarks.scale_bench --child ...`), so its peak memory is its own:
the child reports its VmHWM (peak resident set, /proc/self/status) and this process reads
`getrusage(RUSAGE_CHILDREN).ru_maxrss` after it exits, the larger of the two being printed. Printed
per N: evaluate wall time, endpoint calls (counted by the endpoint, must be N), peak RSS and prompts/s
of the invocation phase. A call count other than N is a failure; timings and memory are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import workload
from benchmarks.common import REPO_ROOT, environment, print_table
from benchmarks.step_run import OFFLINE_SCORING_ENV, StepFolder
from tests.support.model_server import ModelServer

DEFAULT_SIZES = (10_000, 100_000)
CONCURRENCY = 8
# QAAccuracy's fmeval module imports torch and transformers (its BERTScore helper) even when BERTScore is not
# computed: the largest N runs once more without it, to show what the step itself holds apart from that import.
WITHOUT_BERTSCORE_IMPORT = tuple(item for item in workload.ALGORITHMS if item["algorithm"] != "QAAccuracy")


@dataclass(frozen=True)
class ScaleCase:
    algorithms: str
    prompts: int
    endpoint_calls: int
    reported_calls: int
    evaluate_seconds: float
    invocation_seconds: float | None
    peak_rss_mb: float
    peak_tree_rss_mb: float

    @property
    def prompts_per_second(self) -> float | None:
        return self.prompts / self.invocation_seconds if self.invocation_seconds else None


@dataclass(frozen=True)
class ScaleBenchResult:
    cases: list[ScaleCase]

    @property
    def problems(self) -> list[str]:
        found = []
        for case in self.cases:
            if case.endpoint_calls != case.prompts:
                found.append(f"scale N={case.prompts:,}: {case.endpoint_calls:,} endpoint calls, expected N")
            if case.reported_calls != case.endpoint_calls:
                found.append(
                    f"scale N={case.prompts:,}: summary.json says {case.reported_calls:,} model calls, "
                    f"the endpoint saw {case.endpoint_calls:,}"
                )
        return found


def _peak_rss_mb_of_self() -> float:
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_main(argv: list[str]) -> int:
    """In the child: run the evaluate step of the prepared folder and print what it measured as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true")
    parser.add_argument("root", type=Path)
    parser.add_argument("config", type=Path)
    parser.add_argument("catalog", type=Path)
    args = parser.parse_args(argv)
    with environment(**OFFLINE_SCORING_ENV):
        folder = StepFolder(args.root, args.config, args.catalog)
        outcome = folder.run_evaluate(workload.MODEL_NAME)
    print(
        json.dumps(
            {
                "model_calls": outcome.summary.model_calls,
                "evaluate_seconds": outcome.wall_seconds,
                "invocation_seconds": outcome.invocation_seconds,
                "peak_rss_mb": _peak_rss_mb_of_self(),
            }
        )
    )
    return 0


class TreeRssSampler:
    """The peak of the summed RSS of a process and all its descendants (Ray's workers, when it starts
    them, are not the step's process but are its memory), sampled every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self.peak_bytes = 0
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        import psutil

        try:
            root = psutil.Process(self._pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            total = 0
            try:
                processes = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for process in processes:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    total += process.memory_info().rss
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self._interval)

    def __enter__(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _run_one(
    prompts: int, server: ModelServer, work: Path, algorithms: tuple[dict[str, Any], ...] = workload.ALGORITHMS
) -> ScaleCase:
    case_dir = work / f"n{prompts}"
    config_path = workload.write_config(case_dir, server.url, concurrency=CONCURRENCY, algorithms=algorithms)
    catalog_dir = case_dir / "catalog"
    workload.write_catalog(catalog_dir, workload.catalog_rows(prompts))
    with environment(**OFFLINE_SCORING_ENV):
        StepFolder(case_dir / "run", config_path, catalog_dir).run_preprocess()
    server.reset_counters()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    command = [sys.executable, "-m", "benchmarks.scale_bench", "--child"]
    command += [str(case_dir / "run"), str(config_path), str(catalog_dir)]
    with (
        subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child,
        TreeRssSampler(child.pid) as tree,
    ):
        stdout, stderr = child.communicate()
    if child.returncode != 0:
        said = [line for line in stderr.strip().splitlines() if not line.startswith("INFO ")]
        raise RuntimeError(f"scale N={prompts:,}: the evaluate child failed: {' | '.join(said[-3:])}")
    measured = json.loads(stdout.strip().splitlines()[-1])
    # ru_maxrss of the children is the largest child so far: it only says something new when it grew.
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak = max(measured["peak_rss_mb"], children_peak / 1024.0 if children_peak > before else 0.0)
    return ScaleCase(
        algorithms=", ".join(item["algorithm"] for item in algorithms),
        prompts=prompts,
        endpoint_calls=server.requests_total,
        reported_calls=measured["model_calls"],
        evaluate_seconds=measured["evaluate_seconds"],
        invocation_seconds=measured["invocation_seconds"],
        peak_rss_mb=peak,
        peak_tree_rss_mb=tree.peak_bytes / 2**20,
    )


def run(sizes: tuple[int, ...] = DEFAULT_SIZES) -> ScaleBenchResult:
    print(
        f"== scale: our evaluate step at N = {', '.join(f'{n:,}' for n in sizes)} prompts, endpoint latency 0 ms, "
        f"at most {CONCURRENCY} concurrent requests; the step in a child process (peak RSS is its own)"
    )
    cases = []
    with (
        tempfile.TemporaryDirectory(prefix="evalops-scale-bench-") as tmp,
        ModelServer(answers=workload.answer, keep_requests=False) as server,
    ):
        runs = [(prompts, workload.ALGORITHMS) for prompts in sizes] + [(max(sizes), WITHOUT_BERTSCORE_IMPORT)]
        for prompts, algorithms in runs:
            cases.append(_run_one(prompts, server, Path(tmp), algorithms))
            # Each case's folder goes at once: deleting 100k cache files takes a while on a busy disk.
            shutil.rmtree(Path(tmp, f"n{prompts}"), ignore_errors=True)
        result = ScaleBenchResult(cases)
        print_result(result)
    return result


def print_result(result: ScaleBenchResult) -> None:
    print()
    print_table(
        [
            "N",
            "endpoint calls",
            "evaluate wall s",
            "invocation s",
            "prompts/s",
            "peak RSS MB",
            "with children MB",
            "algorithms",
        ],
        [
            (
                f"{case.prompts:,}",
                f"{case.endpoint_calls:,}",
                f"{case.evaluate_seconds:.1f}",
                "-" if case.invocation_seconds is None else f"{case.invocation_seconds:.1f}",
                "-" if case.prompts_per_second is None else f"{case.prompts_per_second:,.0f}",
                f"{case.peak_rss_mb:,.0f}",
                f"{case.peak_tree_rss_mb:,.0f}",
                case.algorithms,
            )
            for case in result.cases
        ],
    )
    full = [case for case in result.cases if case.algorithms == result.cases[0].algorithms]
    if len(full) >= 2:
        small, large = full[0], full[-1]
        if small.prompts_per_second and large.prompts_per_second:
            print(
                f"prompts/s at N={large.prompts:,} is {large.prompts_per_second / small.prompts_per_second:.0%} "
                f"of N={small.prompts:,}"
            )


if __name__ == "__main__":
    raise SystemExit(child_main(sys.argv[1:]))
