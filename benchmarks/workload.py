"""The evaluation workload of the benchmarks: a review-sentiment catalog, a deterministic model, one config.

One dataset that three offline fmeval algorithms apply to: every record is a product review whose
reference answer is its sentiment label, so FactualKnowledge (is the label in the answer?), QAAccuracy
(exact, quasi-exact and token-overlap match with the label) and ClassificationAccuracy (the label
read out of the answer) all score the same model outputs.

The model behind the local endpoint is a pure function of the prompt: it finds the review's sentiment
phrase and answers with its label, in one of several styles chosen by a hash of the prompt, and
answers wrongly for about one prompt in eight. Both approaches of a benchmark therefore see the same
outputs, and the scores are neither all 1 nor all 0.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

MODEL_NAME = "candidate"
DATASET_NAME = "product_reviews"
CATALOG_FILE = "product_reviews.jsonl"
CONFIG_FILE = "benchmark.yaml"
ENDPOINT_ROUTE = "/generate"  # the model server's plain TGI route: {"inputs"} -> {"generated_text"}
PROMPT_TEMPLATE = "Is this review positive, negative or neutral? Answer with one word. Review: $model_input"
INPUT_KEY, TARGET_KEY, CATEGORY_KEY = "review", "sentiment", "product"
EDIT_SUFFIX = " (Edited by the customer.)"

PHRASES: Mapping[str, tuple[str, ...]] = {
    "positive": ("works perfectly", "exceeded my expectations", "great value for the money", "I would buy it again"),
    "negative": ("broke after a week", "a waste of money", "stopped working", "arrived damaged"),
    "neutral": ("does what it says", "nothing special", "an average product", "exactly as described"),
}
LABELS: tuple[str, ...] = tuple(PHRASES)
PRODUCTS = ("books", "kitchen", "electronics", "toys", "garden")
NO_LABEL_ANSWER = "I cannot tell."

ALGORITHMS: tuple[dict[str, Any], ...] = (
    {"algorithm": "FactualKnowledge", "target_output_delimiter": "<OR>"},
    {"algorithm": "QAAccuracy", "target_output_delimiter": "<OR>"},
    {"algorithm": "ClassificationAccuracy", "valid_labels": list(LABELS)},
)


def catalog_rows(count: int, *, edited_every: int | None = None) -> list[dict[str, str]]:
    """`count` distinct reviews; with `edited_every=k`, reviews 0, k, 2k, ... carry an edit (a new prompt)."""
    rows = []
    for index in range(count):
        label = LABELS[index % len(LABELS)]
        phrases = PHRASES[label]
        product = PRODUCTS[(index // len(LABELS)) % len(PRODUCTS)]
        review = f"Order {index:06d} ({product}): {phrases[(index // 7) % len(phrases)]}."
        if edited_every is not None and index % edited_every == 0:
            review += EDIT_SUFFIX
        rows.append({INPUT_KEY: review, TARGET_KEY: label, CATEGORY_KEY: product})
    return rows


def edited_count(count: int, every: int) -> int:
    """How many of `count` reviews `catalog_rows(count, edited_every=every)` edits."""
    return len(range(0, count, every))


def answer(prompt: str) -> str:
    """The model: the label of the sentiment phrase in the prompt, in a style picked by the prompt's hash."""
    label = next((name for name, phrases in PHRASES.items() if any(p in prompt for p in phrases)), None)
    if label is None:
        return NO_LABEL_ANSWER
    draw = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:4], "big") / 2**32
    if draw < 0.125:
        return LABELS[(LABELS.index(label) + 1) % len(LABELS)]  # wrong
    if draw < 0.30:
        return f"The review is {label}."  # right, in a sentence
    if draw < 0.40:
        return label.capitalize()  # right, capitalised
    return label


def write_catalog(catalog_dir: Path, rows: Sequence[Mapping[str, str]]) -> Path:
    catalog_dir.mkdir(parents=True, exist_ok=True)
    path = catalog_dir / CATALOG_FILE
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_config(
    folder: Path, endpoint_url: str, *, concurrency: int, algorithms: Sequence[Mapping[str, Any]] = ALGORITHMS
) -> Path:
    """The evaluation config of the benchmark: one `http` model at the local endpoint, the given algorithms
    (default: the three of `ALGORITHMS`)."""
    config = {
        "pipeline": {"name": "evalops-benchmark", "description": "Endpoint calls and wall time of an evaluation"},
        "dataset": {
            "dataset_name": DATASET_NAME,
            "input_data_location": CATALOG_FILE,
            "dataset_mime_type": "jsonlines",
            "model_input_key": INPUT_KEY,
            "target_output_key": TARGET_KEY,
            "category_key": CATEGORY_KEY,
        },
        "models": [
            {
                "name": MODEL_NAME,
                "model_provider": "http",
                "endpoint_url": endpoint_url + ENDPOINT_ROUTE,
                "evaluation_config": {"prompt_template": PROMPT_TEMPLATE, "max_concurrency": concurrency},
            }
        ],
        "model_registry": {"model_package_group_name": "evalops-benchmark"},
        "algorithms": [dict(item) for item in algorithms],
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_FILE
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
