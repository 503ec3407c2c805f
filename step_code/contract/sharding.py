"""What the plan, preprocess, the shard jobs and the merge share about a sharded evaluation.

A model with `shards: K > 1` is evaluated by one processing job of K instances. Preprocess writes the
processed dataset a second time as K files of contiguous record ranges (`shards-<K>/`); the job's input
uses ShardedByS3Key, so each instance receives its share of those files and evaluates each one into
`shard-results/<shard file stem>/` (the same files an unsharded evaluation writes, plus the invocation
totals and the score columns). The merge step reads the K results in shard order.
"""

from __future__ import annotations

import math
import re

SHARDS_OUTPUT_PREFIX = "shards-"
# The input of a shard job that receives its share of the shard files.
SHARDS_INPUT = "shards"
SHARD_RESULTS = "shard-results"
# Invocation totals of one shard (counts, latencies of every call, token sums), for the merge.
TOTALS_FILE = "invocation_totals.json"
# Beside algorithms/<stem>.jsonl: the columns fmeval's aggregation reads, one row per scored record.
SCORE_COLUMNS_SUFFIX = ".scores.parquet"
MAX_SHARDS = 64
# `shards: auto`: one shard per this many prompts, at most MAX_SHARDS. Scoring costs 1.13 ms of CPU per record
# (benchmarks, shards), so a shard of 25,000 spends about 30 s scoring against the minutes its instance takes to
# start; the endpoint, not the shard, bounds the wall time, so smaller shards would buy start-ups and requests in
# flight the endpoint cannot serve. 1M prompts gives 40 shards, under the cap.
AUTO_SHARDS = "auto"
RECORDS_PER_AUTO_SHARD = 25_000
AUTO_SHARDS_RULE = f"ceil(prompts / {RECORDS_PER_AUTO_SHARD:,}), 1 to {MAX_SHARDS}"

_SHARD_FILE_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})\.jsonl$")


def shards_output(count: int) -> str:
    return f"{SHARDS_OUTPUT_PREFIX}{count}"


def shard_count_of_output(name: str) -> int | None:
    """K of a `shards-<K>` output name, None for any other name."""
    if not name.startswith(SHARDS_OUTPUT_PREFIX):
        return None
    digits = name[len(SHARDS_OUTPUT_PREFIX) :]
    return int(digits) if digits.isdigit() else None


def shard_file(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}.jsonl"


def shard_stem(index: int, count: int) -> str:
    return shard_file(index, count).removesuffix(".jsonl")


def parse_shard_file(name: str) -> tuple[int, int] | None:
    """(index, count) of a shard file name, None when the name is not one."""
    match = _SHARD_FILE_RE.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def shard_bounds(records: int, count: int) -> list[tuple[int, int]]:
    """[start, end) of each shard: contiguous, in dataset order, sizes differing by at most one."""
    return [(index * records // count, (index + 1) * records // count) for index in range(count)]


def auto_shard_count(records: int) -> int:
    """The shard count `shards: auto` gives a catalog of `records` prompts (AUTO_SHARDS_RULE)."""
    return min(MAX_SHARDS, max(1, math.ceil(records / RECORDS_PER_AUTO_SHARD)))
