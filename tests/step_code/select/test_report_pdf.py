"""The PDF report: one page or more per section, the winner's name, the intervals; `evalops report --pdf`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from pypdf import PdfReader

from pipeline_definitions.cli.main import main
from step_code.report_pdf import SECTIONS


def _pages(path: Path) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(path.read_bytes())).pages]


def _section_starts(pages: list[str]) -> list[int]:
    """The page each section starts on (its title is the page's first line)."""
    firsts = [text.splitlines()[0] if text else "" for text in pages]
    return [firsts.index(title) for title in SECTIONS]


def test_the_select_step_and_evalops_report_write_the_pdf(
    repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "run"
    assert main(["run", str(repo_root / "configs" / "sample.yaml"), "--local", "--output", str(output)]) == 0
    written = output / "steps" / "Select" / "output" / "decision" / "comparison.pdf"

    pages = _pages(written)

    starts = _section_starts(pages)
    assert starts == sorted(starts) and len(set(starts)) == len(SECTIONS)  # each section from its own page
    assert len(pages) >= len(SECTIONS)
    assert "Winner: llama3-8b-instruct" in pages[starts[0]]
    assert "[0.7961, 0.9843] n=40" in pages[starts[2]]  # llama3's 37/40 with its exact interval
    assert "mcnemar-exact" in pages[starts[0]]

    # What the PDF rests on: the evaluate step's intervals and its per-record scores, keyed by record id.
    evaluation = output / "steps" / "Evaluate-llama3-8b-instruct" / "output" / "evaluation"
    summary = json.loads((evaluation / "summary.json").read_text(encoding="utf-8"))
    assert summary["intervals"]["factual_knowledge"]["n"] == 40
    record_ids = [json.loads(line)["record_id"] for line in (evaluation / "records.jsonl").open(encoding="utf-8")]
    scored = [json.loads(line) for line in (evaluation / summary["algorithms"][0]["record_scores_path"]).open()]
    assert [row["record_id"] for row in scored] == record_ids
    assert sum(row["scores"]["factual_knowledge"] for row in scored) / 40 == summary["metrics"]["factual_knowledge"]
    html = written.with_suffix(".html").read_text(encoding="utf-8")
    assert html.count('class="error-bar"') >= 3  # one per candidate on the primary metric's chart

    rebuilt = tmp_path / "rebuilt.html"
    capsys.readouterr()
    assert main(["report", str(output), "--output", str(rebuilt), "--pdf"]) == 0
    assert f"PDF report: {rebuilt.with_suffix('.pdf')}" in capsys.readouterr().out
    assert "Winner: llama3-8b-instruct" in "".join(_pages(rebuilt.with_suffix(".pdf")))
