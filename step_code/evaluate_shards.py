"""One instance of a sharded evaluate job: evaluate every shard file this instance received.

    python -m step_code.evaluate_shards --config C --output-dir O --model M --execution-id E --shards-dir S
        [--deployment-dir P] [--catalog-dir K] --cache-uri U [--response-cache use|bypass]

`--shards-dir` holds this instance's share of preprocess's `shards-<K>/` files (ShardedByS3Key: usually
one file per instance, but the step does not rely on how SageMaker deals them out). Each file is
evaluated exactly as the evaluate step evaluates a whole dataset (`evaluate_step.evaluate`: its own
invocation concurrency, the shared response cache, in-process scoring) into `<output>/<shard stem>/`,
so the instances of one job never write the same key. The merge step (`step_code.merge_shards`) turns
the K results into the model's evaluation. A shard that fails ends the job with that shard's reason;
a retried job finds every answer its earlier attempt received in the response cache.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from step_code import fmeval_runtime, storage
from step_code.aws_resources import ControlPlaneError
from step_code.contract.files import MANIFEST_FILE, PROCESSED_FILE, RESPONSE_CACHE_MODES, RESPONSE_CACHE_USE
from step_code.contract.sharding import parse_shard_file, shard_stem
from step_code.evaluate_step import EvaluateArgs, evaluate
from step_code.progress import ProgressListener
from step_code.step_args import step_parser
from step_code.step_io import run_step


def shard_files(shards_dir: Path) -> list[tuple[int, int, Path]]:
    """(index, count, path) of the shard files in `shards_dir`, in shard order; other files are refused."""
    if not shards_dir.is_dir():
        raise ControlPlaneError(f"{shards_dir}: folder not found (run the preprocess step with shards first)")
    found = []
    for path in sorted(shards_dir.iterdir()):
        parsed = parse_shard_file(path.name)
        if parsed is None:
            raise ControlPlaneError(f"{path}: not a shard file (expected shard-NNNNN-of-NNNNN.jsonl)")
        found.append((*parsed, path))
    return found


def evaluate_shard(args: EvaluateArgs, index: int, count: int, path: Path, progress: ProgressListener | None) -> None:
    """The shard file as the dataset of one evaluation (its manifest names the shard's own sha256)."""
    with tempfile.TemporaryDirectory(prefix="evalops-shard-") as folder:
        dataset = Path(folder)
        (dataset / PROCESSED_FILE).symlink_to(path.resolve())
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        (dataset / MANIFEST_FILE).write_text(json.dumps({"processed_sha256": digest}) + "\n", encoding="utf-8")
        shard_args = EvaluateArgs(
            config=args.config,
            output_dir=storage.join(args.output_dir, shard_stem(index, count)),
            model=args.model,
            execution_id=args.execution_id,
            dataset_dir=str(dataset),
            deployment_dir=args.deployment_dir,
            catalog_dir=args.catalog_dir,
            cache_uri=args.cache_uri,
            response_cache=args.response_cache,
        )
        try:
            evaluate(shard_args, progress=progress)
        except (ControlPlaneError, fmeval_runtime.JudgeHookError) as exc:
            raise ControlPlaneError(f"shard {index} of {count} ({path.name}): {exc}") from None


def main(argv: Sequence[str] | None = None, *, progress: ProgressListener | None = None) -> int:
    parser = step_parser("step_code.evaluate_shards", __doc__, model=True, execution_id=True, output_type=str)
    parser.add_argument("--shards-dir", required=True, type=Path)
    parser.add_argument("--deployment-dir")
    parser.add_argument("--catalog-dir")
    parser.add_argument("--cache-uri", required=True)
    parser.add_argument("--response-cache", choices=RESPONSE_CACHE_MODES, default=RESPONSE_CACHE_USE)
    ns = parser.parse_args(argv)
    args = EvaluateArgs(
        config=ns.config,
        output_dir=ns.output_dir,
        model=ns.model,
        execution_id=ns.execution_id,
        dataset_dir="",
        deployment_dir=ns.deployment_dir,
        catalog_dir=ns.catalog_dir,
        cache_uri=ns.cache_uri,
        response_cache=ns.response_cache,
    )

    def body() -> None:
        for index, count, path in shard_files(ns.shards_dir):
            evaluate_shard(args, index, count, path, progress)

    return run_step("evaluate", body)


if __name__ == "__main__":
    raise SystemExit(main())
