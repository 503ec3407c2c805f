"""The validate benchmark: every honest config of it is accepted and every hostile one refused, one line each."""

from __future__ import annotations

import pytest

from benchmarks.__main__ import main
from benchmarks.validate_bench import run
from step_code.contract import algorithms
from tests.benchmarks.test_benchmarks import table_rows


def test_sixty_models_with_each_algorithm_validate_and_hostile_configs_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = run(models=60, unknown=500)

    assert result.problems == []
    rows = table_rows(capsys.readouterr().out)
    for name in algorithms.algorithm_names():
        assert rows[name][1] == "0", name
    assert rows["alias bomb (9 levels of 9 aliases)"][1:3] == ["2", "1"]
    assert rows["500 unknown keys"][1:3] == ["2", "500"]
    assert rows["a FIFO as the config"][1:3] == ["2", "1"]


def test_the_command_runs_only_the_validate_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--smoke", "--only", "validate"])

    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "== validate: 60 models x each of the 12 algorithms" in printed
    assert "== evaluation" not in printed and "== synth" not in printed and "FAILED" not in printed
