"""The judge benchmark: its smoke run prints every judge's rows, batched as asked, with (a) and (b) agreeing;
its checks reject a score difference and a batch size that never reached the model.

The smoke run is a child process: other tests of a session replace fmeval's judge helpers in-process
with their stand-ins (`tests/step_code/evaluate/judge_standin.py`), and the benchmark must measure fmeval's own.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from benchmarks import judge_bench
from benchmarks.__main__ import parse_args, sizes_of
from benchmarks.common import REPO_ROOT
from tests.benchmarks.test_benchmarks import table_rows

RECORDS = judge_bench.SMOKE.records["bertscore"]


def path_run(scores: list[float], forwards: int = 1) -> judge_bench.PathRun:
    return judge_bench.PathRun("(b) batch 4", "4", 1.0, [{"toxicity": value} for value in scores], forwards)


def case(ours: judge_bench.PathRun, expected_forwards: int = 1) -> judge_bench.JudgeCase:
    return judge_bench.JudgeCase(
        judge="toxigen",
        model="stand-in",
        dims=judge_bench.SMOKE.dims["toxigen"],
        fmeval=path_run([0.25, 0.5]),
        ours=[(4, ours)],
        expected_forwards={4: expected_forwards},
        tokens_per_output=1.0,
        tokens_per_reference=1.0,
    )


def test_checks_accept_padding_noise_and_reject_a_real_difference_or_an_unbatched_model() -> None:
    assert judge_bench.JudgeBenchResult([case(path_run([0.25 + 1e-6, 0.5]))]).problems == []
    (different,) = judge_bench.JudgeBenchResult([case(path_run([0.25, 0.5002]))]).problems
    assert "toxigen batch 4 differs from fmeval's path by 2.0e-04" in different
    (missing,) = judge_bench.JudgeBenchResult([case(path_run([0.25]))]).problems
    assert "by inf" in missing
    (unbatched,) = judge_bench.JudgeBenchResult([case(path_run([0.25, 0.5], forwards=2))]).problems
    assert "2 forward passes of the model, expected 1" in unbatched
    assert math.isinf(case(path_run([0.25, math.nan])).difference(path_run([0.25, math.nan])))


def test_expected_forward_passes_follow_the_batch_size() -> None:
    pairs = [judge_bench.Pair("q", f"output {i}", "same reference") for i in range(10)]
    assert judge_bench.expected_forwards("toxigen", pairs, 4) == 3
    # bert_score embeds the distinct texts: 10 outputs and one reference.
    assert judge_bench.expected_forwards("bertscore", pairs, 4) == 3
    assert judge_bench.expected_forwards("bertscore", pairs, 1) == 11


def test_texts_have_the_asked_lengths_and_are_the_same_for_a_seed() -> None:
    pairs = judge_bench.TextMaker(seed=3).pairs(50)
    assert pairs == judge_bench.TextMaker(seed=3).pairs(50)
    assert all(20 <= len(pair.output.split()) <= 80 and 5 <= len(pair.reference.split()) <= 30 for pair in pairs)


def test_judge_records_override_every_judge() -> None:
    assert sizes_of(parse_args(["--only", "judges"])).judges == judge_bench.FULL
    assert sizes_of(parse_args(["--smoke", "--judge-records", "7"])).judges.records == dict.fromkeys(
        judge_bench.JUDGES, 7
    )
    with pytest.raises(SystemExit):
        parse_args(["--judge-records", "0"])


@pytest.mark.slow
def test_smoke_run_scores_every_judge_batched_and_as_fmeval_does() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "judges", "--smoke"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    printed = done.stdout
    assert done.returncode == 0, printed + done.stderr
    assert "FAILED" not in printed
    rows = table_rows(printed)
    # records, texts per call, forward passes, s, records/s, speed-up, peak RSS MB, max |a - b|
    assert rows["detoxify (a) fmeval"][:3] == [str(RECORDS), "64 texts", "1"]
    assert rows["toxigen (a) fmeval"][:3] == [str(RECORDS), "1 text (no batch_size)", str(RECORDS)]
    assert rows["bertscore (a) fmeval"][:3] == [str(RECORDS), "1 pair per compute", str(RECORDS)]
    texts_per_record = {"detoxify": 1, "toxigen": 1, "bertscore": 2}
    for judge in judge_bench.JUDGES:
        for size in judge_bench.SMOKE.batch_sizes[judge]:
            records, batch, forwards, *_, difference = rows[f"{judge} (b) batch {size}"]
            assert (records, batch) == (str(RECORDS), str(size))
            # Every text is distinct, so bert_score embeds outputs and references: 2 per record.
            assert int(forwards) == math.ceil(texts_per_record[judge] * RECORDS / size)
            assert float(difference) <= judge_bench.MAX_DIFFERENCE
    assert "(a) and (b) agree within 0.0001 for every judge and batch size: yes" in printed
    assert "GPU: not measured" in printed
    assert "peak RSS of the process:" in printed
    assert "Projection: a judge algorithm on CPU, 1,000,000 prompts per model" in printed
