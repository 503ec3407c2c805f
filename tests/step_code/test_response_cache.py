"""ResponseCache: keys, round trips on local folders and S3, and what a load costs."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from step_code import storage
from step_code.response_cache import CachedResponse, ResponseCache, cache_key

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
