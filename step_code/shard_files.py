"""Preprocess's shard files: the processed dataset split into K contiguous record ranges, one file each.

Contiguous ranges in dataset order, so the merge can put the shards' results back in dataset order by
concatenating them, and the aggregation then sees exactly the columns an unsharded run sees.
"""

from __future__ import annotations

import logging

from step_code import storage
from step_code.aws_resources import ControlPlaneError
from step_code.contract.sharding import shard_bounds, shard_count_of_output, shard_file

logger = logging.getLogger(__name__)


def write_shards(processed: bytes, output_dir: str) -> list[str]:
    """Writes `processed` (JSON Lines) as the shard files of `output_dir`, a `shards-<K>` folder; returns their URIs."""
    count = shard_count_of_output(storage.basename(output_dir.rstrip("/")))
    if count is None:
        raise ControlPlaneError(f"--shard-output {output_dir}: expected a folder named shards-<count>")
    lines = processed.splitlines(keepends=True)
    if len(lines) < count:
        raise ControlPlaneError(
            f"shards: {count} shards for {len(lines)} processed records; give at most {len(lines)} shards"
        )
    written = []
    for index, (start, end) in enumerate(shard_bounds(len(lines), count)):
        uri = storage.join(output_dir, shard_file(index, count))
        storage.write_bytes(uri, b"".join(lines[start:end]), content_type="application/jsonl")
        written.append(uri)
    logger.info("%d records written as %d shards in %s", len(lines), count, output_dir)
    return written
