"""The columns fmeval's aggregation reads, kept per algorithm so that shards can be aggregated as one.

`algorithms/<stem>.scores.parquet`: one row per scored record in dataset order; the score columns
fmeval aggregates (doubles, NaN where a record has no value), the non-score columns the aggregation
also reads (category; ClassificationAccuracy's target and classified output). The names that are
aggregated as dataset scores are stored in the file's metadata. The merge of a sharded evaluation
concatenates the shards' frames and runs fmeval's aggregation once over all records.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DATASET_SCORES_KEY = b"evalops.dataset_scores"


def write_score_columns(path: Path, frame: Any, dataset_scores: Sequence[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), DATASET_SCORES_KEY: json.dumps(list(dataset_scores)).encode()}
    pq.write_table(table.replace_schema_metadata(metadata), path)


def read_score_columns(path: Path) -> tuple[Any, list[str]]:
    """(pandas frame, names aggregated as dataset scores)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = json.loads((table.schema.metadata or {}).get(DATASET_SCORES_KEY, b"[]"))
    return table.to_pandas(), list(names)
