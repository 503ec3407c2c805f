"""Response cache on S3: the requests of a re-run over loose entries against a re-run over a segment.

Against a moto server in its own process: a first run stores N answers as loose entries (one PUT
each, 32 at once, as the evaluate step's invocation threads do), then
- a re-run reads them as loose entries (what every run did before segments): LIST pages and N GETs;
- the first run's `compact()` writes them as one segment and deletes the loose entries;
- a re-run reads the segment, then compacts (nothing new: no request).
Printed: objects under the model's prefix, LIST/GET/PUT/DELETE requests (counted with a botocore
hook on our S3 client) and seconds of each phase. A re-run on segments that does not find all N
answers, or needs more than one LIST and one GET per segment, is a failure; timings are printed,
never asserted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import boto3

from benchmarks import workload
from benchmarks.common import environment, print_table
from step_code import storage
from step_code.response_cache import CachedResponse, ModelResponseCache, ResponseCache
from tests.support.moto_server import moto_server
from tests.support.s3_requests import counting_s3_requests

BUCKET = "evalops-cache-bench"
CACHE_URI = f"s3://{BUCKET}/runs/benchmark/response-cache"
IDENTITY = "http|http://127.0.0.1/generate|*"
SETTINGS = {"inference_parameters": {}, "content_template": '{"inputs": $prompt}', "output": "generated_text"}
WRITE_THREADS = 32
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass(frozen=True)
class CachePhase:
    name: str
    objects: int
    stored_bytes: int
    requests: Counter[str]
    seconds: float
    answers_found: int | None


@dataclass(frozen=True)
class CacheBenchResult:
    prompts: int
    phases: list[CachePhase]

    @property
    def problems(self) -> list[str]:
        found = []
        loose, segments = self.phases[1], self.phases[3]
        for phase in (loose, segments):
            if phase.answers_found != self.prompts:
                found.append(f"cache: {phase.name} found {phase.answers_found} of {self.prompts} answers")
        if dict(segments.requests) != {"ListObjectsV2": 1, "GetObject": 1}:
            found.append(f"cache: {segments.name} sent {dict(segments.requests)}, expected one LIST and one GET")
        return found


def _prompts(count: int) -> list[str]:
    return [workload.PROMPT_TEMPLATE.replace("$model_input", row["review"]) for row in workload.catalog_rows(count)]


def _answer(prompt: str) -> CachedResponse:
    text = workload.answer(prompt)
    return CachedResponse(text, len(prompt) // 4, 1, True, 50.0, None)


def _objects(view: ModelResponseCache) -> tuple[int, int]:
    """(objects, bytes) under the model's prefix, listed outside the counted client."""
    bucket, key = storage.split_s3(view.prefix)
    count = size = 0
    for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key + "/"):
        for item in page.get("Contents", []):
            count += 1
            size += item["Size"]
    return count, size


def run(prompts: int = 100_000) -> CacheBenchResult:
    print(f"== response cache on S3 (moto server): a re-run of N={prompts:,} prompts, loose entries against segments")
    asked = _prompts(prompts)
    phases: list[CachePhase] = []
    with moto_server() as server, environment(**FAKE_AWS, AWS_ENDPOINT_URL=server.url):
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        with counting_s3_requests() as counter:

            def phase(name: str, view: ModelResponseCache, action: Callable[[], object]) -> None:
                counter.reset()
                started = time.perf_counter()
                found = action()
                seconds = time.perf_counter() - started
                requests = counter.snapshot()
                objects, stored = _objects(view)
                answers = len(found) if isinstance(found, dict) else None
                phases.append(CachePhase(name, objects, stored, requests, seconds, answers))

            first = ResponseCache(CACHE_URI)
            writer = first.for_model(IDENTITY, SETTINGS)

            def store_all() -> None:
                with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
                    for _ in pool.map(lambda prompt: writer.store(prompt, _answer(prompt)), asked):
                        pass

            phase("first run: store loose entries", writer, store_all)
            loose_reader = ResponseCache(CACHE_URI).for_model(IDENTITY, SETTINGS)
            phase("re-run on loose entries: load", loose_reader, lambda: loose_reader.load(asked))
            phase("first run ends: compact()", writer, writer.compact)
            rerun = ResponseCache(CACHE_URI)
            reader = rerun.for_model(IDENTITY, SETTINGS)

            def load_and_compact() -> dict[str, CachedResponse]:
                found = reader.load(asked)
                rerun.compact()
                return found

            phase("re-run on segments: load + compact()", reader, load_and_compact)
    result = CacheBenchResult(prompts, phases)
    print_result(result)
    return result


def print_result(result: CacheBenchResult) -> None:
    print()
    print_table(
        ["phase", "objects after", "LIST", "GET", "PUT", "DELETE (batches)", "answers found", "seconds", "stored MB"],
        [
            (
                p.name,
                f"{p.objects:,}",
                f"{p.requests['ListObjectsV2']:,}",
                f"{p.requests['GetObject']:,}",
                f"{p.requests['PutObject']:,}",
                f"{p.requests['DeleteObjects']:,}",
                "-" if p.answers_found is None else f"{p.answers_found:,}",
                f"{p.seconds:.1f}",
                f"{p.stored_bytes / 1e6:.2f}",
            )
            for p in result.phases
        ],
    )
    loose, segments = result.phases[1], result.phases[3]
    print(
        f"re-run: {sum(loose.requests.values()):,} requests in {loose.seconds:.1f} s over loose entries, "
        f"{sum(segments.requests.values()):,} in {segments.seconds:.1f} s over segments"
    )
