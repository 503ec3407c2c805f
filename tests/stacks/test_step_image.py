"""The step image's build context: only what the Dockerfile copies, so code edits do not rebuild the image."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks.components.step_image import build_context_files, context_exclude
from tests.stacks.conftest import SynthesizedApp


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        ("FROM python:3.11\nCOPY a.txt b.py /opt/\n", ["Dockerfile", "a.txt", "b.py"]),
        ('FROM python:3.11\nCOPY --chown=1000 ["req.txt", "/opt/req.txt"]\n', ["Dockerfile", "req.txt"]),
        ("FROM python:3.11 AS build\nCOPY --from=build /x /y\nadd ./src/ /src\n", ["Dockerfile", "src"]),
        (
            "FROM python:3.11\nCOPY one.py \\\n     two.py /opt/\nRUN echo COPY x y\n",
            ["Dockerfile", "one.py", "two.py"],
        ),
    ],
)
def test_copy_sources_are_found(dockerfile: str, expected: list[str], tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    assert build_context_files(tmp_path / "Dockerfile") == expected


def test_a_copied_folder_is_kept_whole(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "Dockerfile").write_text("FROM python:3.11\nCOPY src /src\nCOPY setup.py /\n")
    assert context_exclude(tmp_path) == [
        "*",
        "!Dockerfile",
        "!src",
        "!src/**",
        "!setup.py",
        "**/__pycache__",
        "**/*.pyc",
    ]


def test_the_staged_build_context_is_what_the_dockerfile_copies(reference_app: SynthesizedApp, repo_root: Path) -> None:
    asset_hash = reference_app.stage.evaluation.step_image.asset_hash
    staged = reference_app.outdir / f"asset.{asset_hash}"
    files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    assert files == sorted(build_context_files(repo_root / "step_code" / "Dockerfile"))
    assert "Dockerfile" in files and "offline_assets.py" in files
    assert "evaluate.py" not in files
