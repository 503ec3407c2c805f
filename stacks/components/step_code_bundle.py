"""The step code as one zip on the processing jobs' PYTHONPATH: `step_code/` (with its contract), nothing else.

The CLI, the renderer and the local engine (`pipeline_definitions/`) never run in a job, so they are not shipped;
the layer test (tests/test_layers.py) keeps step_code from importing them.

The zip is built by local bundling, byte for byte the same from the same sources (sorted entries, fixed
timestamps and permissions), so its asset hash and the pipeline definition change only with the code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, BundlingOutput, DockerImage, ILocalBundling
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

BUNDLE_FILE_NAME = "step-code.zip"
# Packages in the bundle and the files of each that are code or data they read at run time.
BUNDLED_PACKAGES: dict[str, tuple[str, ...]] = {"step_code": ("**/*.py", "contract/*.yaml")}
# Before 1980 cannot be stored in a zip; any fixed time makes the bytes reproducible.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644 << 16


def bundle_members(repo_root: Path) -> list[tuple[str, Path]]:
    """(name in the zip, file) for every bundled file, sorted by name; caches are never included."""
    members: dict[str, Path] = {}
    for package, patterns in BUNDLED_PACKAGES.items():
        package_dir = repo_root / package
        if not (package_dir / "__init__.py").is_file():
            raise FileNotFoundError(f"{package_dir} is not a Python package; the step code bundle needs it")
        for pattern in patterns:
            for path in package_dir.glob(pattern):
                if path.is_file() and "__pycache__" not in path.parts:
                    members[path.relative_to(repo_root).as_posix()] = path
    return sorted(members.items())


def write_bundle(repo_root: Path, destination: Path) -> None:
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in bundle_members(repo_root):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIMESTAMP)
            info.external_attr = FILE_MODE
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())


@jsii.implements(ILocalBundling)
class _ZipBundling:
    def __init__(self, repo_root: Path) -> None:
        self._repo_root = repo_root

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_options: Any) -> bool:
        write_bundle(self._repo_root, Path(output_dir) / BUNDLE_FILE_NAME)
        return True


class StepCodeBundle(Construct):
    """`asset.s3_object_key` names the zip; the jobs put it on PYTHONPATH and run `python -m step_code.<kind>`."""

    def __init__(self, scope: Construct, construct_id: str, *, repo_root: Path) -> None:
        super().__init__(scope, construct_id)
        self.asset = s3_assets.Asset(
            self,
            "Asset",
            path=str(repo_root / "step_code"),
            asset_hash_type=AssetHashType.OUTPUT,
            bundling=BundlingOptions(
                # Local bundling always succeeds, so no container is ever started; CDK requires an image anyway.
                image=DockerImage.from_registry("scratch"),
                local=_ZipBundling(repo_root),
                output_type=BundlingOutput.ARCHIVED,
            ),
        )
