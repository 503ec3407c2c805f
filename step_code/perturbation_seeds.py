"""Each record's perturbations come from a random generator of its own.

fmeval's semantic perturbation transforms (ButterFinger, RandomUppercase, AddRemoveWhitespace) draw from
`self.rng`, one `np.random.default_rng(seed)` per transform instance, so drawn record after record a
record's perturbations would depend on every record before it: on the catalog's order, on records added
above it, and on where a shard starts. Here, right before a record is perturbed, the transform gets a
fresh generator seeded from the transform's own seed (fmeval's default is 5) and the record's id (the
sha256 of its input and target, `preprocess.record_id`), through `np.random.SeedSequence`'s entropy
`[seed, id]`. A record's perturbed prompts are then a pure function of the record and the config: the
invocation planner and the scoring pass draw the same ones for it, in any order, in any shard.
"""

from __future__ import annotations

from typing import Any

# The key under which the scoring pass gives the perturbation wrapper each fmeval record's id; fmeval's
# per-record output rows keep only its own columns, so the key never reaches a results file.
RECORD_ID_KEY = "evalops_record_id"


def transform_seed(perturbation: Any) -> int:
    """The seed fmeval built the transform with. `Transform.args`/`kwargs` hold what the transform passed
    to `Transform.__init__` (fmeval keeps them to rebuild the transform in Ray workers), which for every
    `SemanticPerturbation` is that class's own parameters, `seed` among them."""
    import inspect

    from fmeval.transforms.semantic_perturbations import SemanticPerturbation

    if not isinstance(perturbation, SemanticPerturbation):
        raise TypeError(f"{type(perturbation).__name__} is not one of fmeval's semantic perturbation transforms")
    bound = inspect.signature(SemanticPerturbation.__init__).bind(
        perturbation, *perturbation.args, **perturbation.kwargs
    )
    return int(bound.arguments["seed"])


def record_generator(seed: int, record_id: str) -> Any:
    """The generator of one record: `[seed, id]` as SeedSequence entropy, the id's UTF-8 bytes read as one
    integer (any id string works; preprocess writes 16 hex digits)."""
    import numpy as np

    return np.random.default_rng([seed, int.from_bytes(record_id.encode("utf-8"), "big")])


class RecordSeededPerturbation:
    """fmeval's perturbation transform, reseeded for each record right before it perturbs that record.

    `perturb(record_id, record)` is the planner's call; calling the wrapper itself on an fmeval record
    that carries `RECORD_ID_KEY` is the scoring pass's, where it stands in the algorithm's transforms for
    the transform it wraps (the same keys in and out; the transform object still does the perturbing)."""

    def __init__(self, perturbation: Any) -> None:
        self.perturbation = perturbation
        self.seed = transform_seed(perturbation)
        self.input_keys = perturbation.input_keys
        self.output_keys = perturbation.output_keys

    def reseed(self, record_id: str) -> None:
        self.perturbation.rng = record_generator(self.seed, record_id)

    def perturb(self, record_id: str, record: dict[str, Any]) -> dict[str, Any]:
        self.reseed(record_id)
        result: dict[str, Any] = self.perturbation(record)
        return result

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        return self.perturb(record[RECORD_ID_KEY], record)
