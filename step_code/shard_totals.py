"""A shard's invocation totals on disk, and the totals of all shards as one run's.

The merge needs what `InvocationTotals` accumulates (latency of every call, token sums, counts), not the
summary's percentiles: percentiles of percentiles are not the percentiles over all calls. The shards
ran at the same time against the same endpoint, so the merged wall time is the longest shard's.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Sequence
from pathlib import Path

from step_code.invocation import InvocationTotals

COUNTS = ("records", "succeeded", "sent", "cached", "model_calls")


def write_totals(path: Path, totals: InvocationTotals) -> None:
    payload = {
        **{name: getattr(totals, name) for name in COUNTS},
        "wall_seconds": totals.wall_seconds,
        # The accumulators are InvocationTotals' own compact fields; this file is their only other reader.
        "latencies_ms": totals._latencies.tolist(),
        "input_tokens": list(totals._input_tokens),
        "output_tokens": list(totals._output_tokens),
    }
    path.write_text(json.dumps(payload) + "\n", encoding="utf-8")


def read_totals(path: Path) -> InvocationTotals:
    payload = json.loads(path.read_text(encoding="utf-8"))
    totals = InvocationTotals()
    for name in COUNTS:
        setattr(totals, name, int(payload[name]))
    totals.wall_seconds = float(payload["wall_seconds"])
    totals._latencies = array("d", payload["latencies_ms"])
    totals._input_tokens = [int(value) for value in payload["input_tokens"]]
    totals._output_tokens = [int(value) for value in payload["output_tokens"]]
    return totals


def merge_totals(shards: Sequence[InvocationTotals]) -> InvocationTotals:
    merged = InvocationTotals()
    for totals in shards:
        for name in COUNTS:
            setattr(merged, name, getattr(merged, name) + getattr(totals, name))
        merged.wall_seconds = max(merged.wall_seconds, totals.wall_seconds)
        merged._latencies.extend(totals._latencies)
        for mine, theirs in (
            (merged._input_tokens, totals._input_tokens),
            (merged._output_tokens, totals._output_tokens),
        ):
            mine[0] += theirs[0]
            mine[1] += theirs[1]
    return merged
