"""ResponseCache: keys, round trips on local folders and S3, segments and compaction, and what a load costs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest

from step_code import storage
from step_code.response_cache import MAX_SEGMENTS, CachedResponse, ModelResponseCache, ResponseCache, cache_key
from tests.support.s3_requests import counting_s3_requests

ANSWER = CachedResponse(
    model_output="Canberra",
    input_tokens=7,
    output_tokens=1,
    tokens_estimated=False,
    latency_ms=12.5,
    log_probability=-0.25,
)
SETTINGS = {"inference_parameters": {"max_new_tokens": 10, "top_p": 0.9}, "content_template": None}


def test_key_depends_on_identity_settings_and_prompt_only() -> None:
    base = cache_key("jumpstart|m|*", SETTINGS, "prompt")
    reordered = {"content_template": None, "inference_parameters": {"top_p": 0.9, "max_new_tokens": 10}}

    assert cache_key("jumpstart|m|*", reordered, "prompt") == base
    assert cache_key("jumpstart|other|*", SETTINGS, "prompt") != base
    assert cache_key("jumpstart|m|*", {**SETTINGS, "custom_attributes": {"accept_eula": True}}, "prompt") != base
    assert cache_key("jumpstart|m|*", SETTINGS, "prompt ") != base


@pytest.fixture(params=["local", "s3"])
def cache_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "response-cache")
    request.getfixturevalue("moto")
    boto3.client("s3").create_bucket(Bucket="evalops-cache")
    return "s3://evalops-cache/runs/response-cache"


def test_round_trip(cache_uri: str) -> None:
    ResponseCache(cache_uri).for_model("bedrock|m|*", SETTINGS).store("What is the capital of Australia?", ANSWER)

    view = ResponseCache(cache_uri).for_model("bedrock|m|*", SETTINGS)
    found = view.load(["What is the capital of Australia?", "never asked"])

    assert found == {"What is the capital of Australia?": ANSWER}
    assert ResponseCache(cache_uri).for_model("bedrock|m|*", {}).load(["What is the capital of Australia?"]) == {}
    assert ResponseCache(cache_uri).for_model("bedrock|n|*", SETTINGS).load(["What is the capital of Australia?"]) == {}


def test_load_lists_once_and_fetches_only_wanted_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    view = ResponseCache(str(tmp_path)).for_model("m", SETTINGS)
    for i in range(60):
        view.store(f"p{i}", ANSWER)
    reads: list[str] = []
    listings: list[str] = []
    read_bytes, list_names = storage.read_bytes, storage.list_names

    def counted_read(uri: str) -> bytes:
        reads.append(uri)
        return read_bytes(uri)

    def counted_list(uri: str) -> list[str]:
        listings.append(uri)
        return list_names(uri)

    monkeypatch.setattr(storage, "read_bytes", counted_read)
    monkeypatch.setattr(storage, "list_names", counted_list)

    found = view.load([f"p{i}" for i in range(0, 120, 4)])

    assert sorted(found) == sorted(f"p{i}" for i in range(0, 60, 4))
    assert len(listings) == 1
    assert len(reads) == 15


def test_unreadable_entries_are_misses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    view = ResponseCache(str(tmp_path)).for_model("m", SETTINGS)
    view.store("good", ANSWER)
    view.store("truncated", ANSWER)
    view.store("moved", ANSWER)
    Path(storage.join(view.prefix, view.key("truncated") + ".json")).write_text('{"prompt": "trunc')
    moved = Path(storage.join(view.prefix, view.key("moved") + ".json"))
    moved.write_text(json.dumps({**json.loads(moved.read_text()), "prompt": "someone else"}))

    assert view.load(["good", "truncated", "moved"]) == {"good": ANSWER}
    assert len([r for r in caplog.records if "unreadable response cache entry" in r.getMessage()]) == 2


# -- segments: compaction, reading them, concurrent runs ---------------------------------------------------------


def answers(count: int, start: int = 0) -> dict[str, CachedResponse]:
    return {
        f"prompt {i}": CachedResponse(f"answer {i}", i, 1, True, 10.0 + i, None) for i in range(start, start + count)
    }


def fill(view: ModelResponseCache, entries: dict[str, CachedResponse]) -> None:
    for prompt, answer in entries.items():
        view.store(prompt, answer)


def loose_names(view: ModelResponseCache) -> list[str]:
    return [name for name in storage.list_names(view.prefix) if "/" not in name]


def segment_names(view: ModelResponseCache) -> list[str]:
    return storage.list_names(view.segments_prefix)


def test_an_answer_is_durable_before_any_compaction(cache_uri: str) -> None:
    view = ResponseCache(cache_uri).for_model("m", SETTINGS)
    view.store("first", ANSWER)

    assert storage.exists(storage.join(view.prefix, view.key("first") + ".json"))
    # What a restarted step sees: another process's cache object, nothing compacted.
    assert ResponseCache(cache_uri).for_model("m", SETTINGS).load(["first"]) == {"first": ANSWER}


def test_compaction_turns_loose_entries_into_one_segment_that_loads_alone(cache_uri: str) -> None:
    entries = answers(30)
    cache = ResponseCache(cache_uri)
    view = cache.for_model("m", SETTINGS)
    fill(view, entries)
    assert len(loose_names(view)) == 30

    [result] = cache.compact()

    assert (result.entries, result.loose_deleted, result.segments_merged) == (30, 30, 0)
    assert loose_names(view) == [] and segment_names(view) == [storage.basename(result.segment or "")]
    again = ResponseCache(cache_uri).for_model("m", SETTINGS)
    assert again.load([*entries, "new prompt"]) == entries
    assert again.compact().segment is None  # nothing new: no segment, no request
    assert ResponseCache(cache_uri).for_model("m", {}).load(entries) == {}


def test_a_load_reads_segments_then_only_the_loose_entries_no_segment_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ResponseCache(str(tmp_path)).for_model("m", SETTINGS)
    fill(first, answers(10))
    first.compact()
    second = ResponseCache(str(tmp_path)).for_model("m", SETTINGS)
    fill(second, answers(5, start=10))  # a run killed before it compacted
    reads: list[str] = []
    read_bytes = storage.read_bytes

    def counted_read(uri: str) -> bytes:
        reads.append(uri)
        return read_bytes(uri)

    monkeypatch.setattr(storage, "read_bytes", counted_read)

    view = ResponseCache(str(tmp_path)).for_model("m", SETTINGS)
    found = view.load(answers(20))

    assert found == answers(15)
    assert sum(uri.endswith(".jsonl.gz") for uri in reads) == 1
    assert sum(uri.endswith(".json") for uri in reads) == 5
    result = view.compact()
    assert (result.entries, result.loose_deleted) == (5, 5)
    assert loose_names(view) == [] and len(segment_names(view)) == 2
    assert ResponseCache(str(tmp_path)).for_model("m", SETTINGS).load(answers(20)) == answers(15)


def test_a_step_killed_while_storing_resumes_from_its_loose_entries(tmp_path: Path, repo_root: Path) -> None:
    cache_dir = tmp_path / "cache"
    # The child stores one answer at a time, as the evaluate step does, until it is killed.
    child_code = (
        "import sys, time\n"
        "from step_code.response_cache import CachedResponse, ResponseCache\n"
        "view = ResponseCache(sys.argv[1]).for_model('m', {})\n"
        "for i in range(10_000):\n"
        "    view.store(f'prompt {i}', CachedResponse(f'answer {i}', i, 1, True, 10.0 + i, None))\n"
        "    time.sleep(0.005)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", child_code, str(cache_dir)],
        cwd=repo_root,
        env={**os.environ, "PYTHONPATH": str(repo_root)},
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(cache_dir.rglob("*.json"))) < 20:
            assert child.poll() is None, "the child finished or died before it could be killed"
            assert time.monotonic() < deadline, "the child made no progress"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    stored = len(list(cache_dir.rglob("*.json")))

    cache = ResponseCache(str(cache_dir))
    view = cache.for_model("m", {})
    found = view.load(answers(10_000))
    [result] = cache.compact()

    assert child.returncode == -signal.SIGKILL
    assert len(found) == stored >= 20
    assert found == answers(stored)
    assert (result.entries, result.loose_deleted) == (stored, stored)
    assert ResponseCache(str(cache_dir)).for_model("m", {}).load(answers(10_000)) == found


def test_a_compaction_killed_before_its_deletes_leaves_duplicates_the_next_one_removes(
    cache_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = ResponseCache(cache_uri).for_model("m", SETTINGS)
    fill(view, answers(12))
    delete_many = storage.delete_many

    def killed(uris: list[str]) -> None:
        raise KeyboardInterrupt  # the step dies between the segment's PUT and the deletes

    monkeypatch.setattr(storage, "delete_many", killed)
    with pytest.raises(KeyboardInterrupt):
        view.compact()
    monkeypatch.setattr(storage, "delete_many", delete_many)
    assert len(loose_names(view)) == 12 and len(segment_names(view)) == 1

    rerun = ResponseCache(cache_uri).for_model("m", SETTINGS)
    assert rerun.load(answers(12)) == answers(12)
    result = rerun.compact()

    assert (result.segment, result.loose_deleted) == (None, 12)
    assert loose_names(view) == [] and len(segment_names(view)) == 1
    assert ResponseCache(cache_uri).for_model("m", SETTINGS).load(answers(12)) == answers(12)


def test_two_runs_compacting_at_once_lose_no_entry(cache_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two runs of one model: overlapping prompts, each with its own; both have listed and written their
    # segment before either deletes (a barrier holds each compaction just before its deletes).
    left, right = ResponseCache(cache_uri).for_model("m", SETTINGS), ResponseCache(cache_uri).for_model("m", SETTINGS)
    fill(left, answers(20))
    fill(right, answers(20, start=10))
    running = ResponseCache(cache_uri).for_model("m", SETTINGS)  # a third run, still invoking
    fill(running, answers(5, start=40))
    barrier = threading.Barrier(2, timeout=30)
    delete_many = storage.delete_many

    def delete_together(uris: list[str]) -> None:
        barrier.wait()
        delete_many(uris)

    monkeypatch.setattr(storage, "delete_many", delete_together)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda view: view.compact(), [left, right]))

    assert sorted(r.entries for r in results) == [20, 20]
    assert len(loose_names(left)) == 5 and len(segment_names(left)) == 2
    assert ResponseCache(cache_uri).for_model("m", SETTINGS).load(answers(45)) == {
        **answers(30),
        **answers(5, start=40),
    }


def test_a_load_racing_a_compaction_finds_the_entries_in_the_new_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = ResponseCache(str(tmp_path)).for_model("m", SETTINGS)
    fill(writer, answers(8))
    list_names = storage.list_names
    raced: list[bool] = []

    def list_then_compact(uri: str) -> list[str]:
        names = list_names(uri)
        if not raced:  # the other run compacts right after our first listing
            raced.append(True)
            writer.compact()
        return names

    monkeypatch.setattr(storage, "list_names", list_then_compact)
    reader = ResponseCache(str(tmp_path)).for_model("m", SETTINGS)

    assert reader.load(answers(8)) == answers(8)
    assert loose_names(reader) == []


def test_compaction_merges_segments_past_the_limit(tmp_path: Path) -> None:
    for run in range(MAX_SEGMENTS):
        cache = ResponseCache(str(tmp_path))
        fill(cache.for_model("m", SETTINGS), answers(3, start=3 * run))
        cache.compact()
    view = ResponseCache(str(tmp_path)).for_model("m", SETTINGS)
    assert len(segment_names(view)) == MAX_SEGMENTS
    everything = answers(3 * MAX_SEGMENTS + 2)
    assert view.load(everything) == answers(3 * MAX_SEGMENTS)
    fill(view, answers(2, start=3 * MAX_SEGMENTS))

    result = view.compact()

    assert (result.entries, result.segments_merged) == (3 * MAX_SEGMENTS + 2, MAX_SEGMENTS)
    assert segment_names(view) == [storage.basename(result.segment or "")]
    assert ResponseCache(str(tmp_path)).for_model("m", SETTINGS).load(everything) == everything


def test_a_segment_of_other_settings_or_a_broken_one_is_a_miss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    view = ResponseCache(str(tmp_path)).for_model("m", SETTINGS)
    fill(view, answers(4))
    segment = view.compact().segment or ""
    other = ResponseCache(str(tmp_path)).for_model("m", {})
    Path(other.segments_prefix).mkdir(parents=True)
    shutil.copy(segment, Path(other.segments_prefix, "copied.jsonl.gz"))
    Path(segment).write_bytes(b"not gzip")

    assert ResponseCache(str(tmp_path)).for_model("m", SETTINGS).load(answers(4)) == {}
    assert ResponseCache(str(tmp_path)).for_model("m", {}).load(answers(4)) == {}
    warnings = [r.getMessage() for r in caplog.records if "unreadable response cache segment" in r.getMessage()]
    assert len(warnings) == 2 and "another model or request settings" in warnings[1]


def test_a_rerun_on_segments_costs_one_list_and_one_get(moto: object) -> None:
    boto3.client("s3").create_bucket(Bucket="evalops-cache")
    uri = "s3://evalops-cache/runs/response-cache"
    entries = answers(1_500)
    first = ResponseCache(uri)
    with counting_s3_requests() as counter:
        fill(first.for_model("m", SETTINGS), entries)
        stored = counter.snapshot()
        counter.reset()
        loose_rerun = ResponseCache(uri).for_model("m", SETTINGS).load(entries)
        on_loose = counter.snapshot()
        counter.reset()
        first.compact()
        compaction = counter.snapshot()
        counter.reset()
        cache = ResponseCache(uri)
        segment_rerun = cache.for_model("m", SETTINGS).load(entries)
        cache.compact()
        on_segments = counter.snapshot()

    assert loose_rerun == segment_rerun == entries
    assert stored == {"PutObject": 1_500}
    assert on_loose == {"ListObjectsV2": 2, "GetObject": 1_500}
    # A LIST of the segments, the segment's PUT, two DeleteObjects batches of at most 1,000 keys.
    assert compaction == {"ListObjectsV2": 1, "PutObject": 1, "DeleteObjects": 2}
    assert on_segments == {"ListObjectsV2": 1, "GetObject": 1}


def test_settings_that_json_does_not_round_trip_still_find_their_segment(tmp_path: Path) -> None:
    settings = {"stop_sequences": ("\n\n", "###"), "inference_parameters": {"max_new_tokens": 10}}
    view = ResponseCache(str(tmp_path)).for_model("m", settings)
    fill(view, answers(3))
    view.compact()

    assert ResponseCache(str(tmp_path)).for_model("m", settings).load(answers(3)) == answers(3)
