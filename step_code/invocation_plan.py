"""Every prompt the configured algorithms will ask a model for, worked out before the model is called.

For each record the planner gives its rendered original prompt and, after it, what some algorithms
ask for besides:
- the semantic-robustness algorithms: the perturbed prompts fmeval's own perturbation transform
  (`get_perturbation_transform` of the algorithm's config: `perturbation_type`, `num_perturbations` and
  the transform's seed) and `GeneratePrompt` produce for each record;
- PromptStereotyping: the prompts of the two sentences of each pair, whose log probabilities it compares.

Each record's perturbations are drawn from a generator seeded from the transform's seed and the
record's id (`perturbation_seeds`), here and in the scoring pass (`record_scoring`), so both see the
same perturbations whatever the order of the records, the shard they fall in or the other records of
the catalog. `invoke_stream` then sends each distinct prompt once, however many algorithms or records
share it.

GeneralSemanticRobustness also samples the original prompt again when the model is not deterministic;
here every distinct prompt has exactly one answer, so fmeval sees a deterministic model and takes its
deterministic path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from step_code.invocation import PromptItem, prompt_items
from step_code.perturbation_seeds import RecordSeededPerturbation

# Columns of a processed record that PromptStereotyping reads (fmeval's DatasetColumns names).
SENT_MORE_INPUT = "sent_more_input"
SENT_LESS_INPUT = "sent_less_input"

RecordPrompts = Callable[[Mapping[str, Any]], list[str]]


def _perturbed_prompts(config_object: Any, prompt_template: str) -> RecordPrompts:
    from fmeval.eval_algorithms.semantic_robustness_utils import get_perturbation_transform
    from fmeval.transforms.common import GeneratePrompt
    from fmeval.transforms.util import create_output_key

    perturbation = RecordSeededPerturbation(get_perturbation_transform(config_object))
    generate = GeneratePrompt(
        input_keys=perturbation.output_keys,
        output_keys=[create_output_key(GeneratePrompt.__name__, key) for key in perturbation.output_keys],
        prompt_template=prompt_template,
    )

    def prompts(row: Mapping[str, Any]) -> list[str]:
        record = generate(perturbation.perturb(str(row["record_id"]), {"model_input": row["model_input"]}))
        return [record[key] for key in generate.output_keys]

    return prompts


def _sentence_pair_prompts(config_object: Any, prompt_template: str) -> RecordPrompts:
    from fmeval.transforms.common import GeneratePrompt

    generate = GeneratePrompt(
        input_keys=[SENT_MORE_INPUT, SENT_LESS_INPUT],
        output_keys=["sent_more_prompt", "sent_less_prompt"],
        prompt_template=prompt_template,
    )

    def prompts(row: Mapping[str, Any]) -> list[str]:
        record = generate({SENT_MORE_INPUT: row[SENT_MORE_INPUT], SENT_LESS_INPUT: row[SENT_LESS_INPUT]})
        return [record[key] for key in generate.output_keys]

    return prompts


# Algorithms that ask the model for more than each record's original prompt; the others score its answer.
EXTRA_PROMPTS: Mapping[str, Callable[[Any, str], RecordPrompts]] = {
    "QAAccuracySemanticRobustness": _perturbed_prompts,
    "SummarizationAccuracySemanticRobustness": _perturbed_prompts,
    "ClassificationAccuracySemanticRobustness": _perturbed_prompts,
    "GeneralSemanticRobustness": _perturbed_prompts,
    "PromptStereotyping": _sentence_pair_prompts,
}


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """One planned prompt's outcome: an output (and log probability), or the error of its call."""

    output: str | None
    log_probability: float | None
    error: str | None


@dataclass(frozen=True)
class PlannedAlgorithmPrompts:
    """What one configured algorithm asks for: its name (config order label) and its fmeval config object."""

    label: str
    algorithm: str
    config_object: Any


class InvocationPlanner:
    """The prompts of one record: its own prompt first, then what each algorithm of `EXTRA_PROMPTS` asks
    for it, in config order. They depend on the record alone, not on the records planned before it."""

    def __init__(self, prompt_template: str, algorithms: Iterable[PlannedAlgorithmPrompts]) -> None:
        self._template = prompt_template
        self.algorithms = list(algorithms)
        self._extras = [
            (entry.label, EXTRA_PROMPTS[entry.algorithm](entry.config_object, prompt_template))
            for entry in self.algorithms
            if entry.algorithm in EXTRA_PROMPTS
        ]

    def items(self, row: Mapping[str, Any]) -> list[PromptItem]:
        """The record's own prompt, then its extra prompts; raises ValueError (one line) when the template
        cannot be rendered."""
        [original] = prompt_items([row], self._template)
        items = [original]
        for label, prompts_of in self._extras:
            for number, prompt in enumerate(prompts_of(row)):
                items.append(
                    PromptItem(
                        record_id=f"{original.record_id}/{label}/{number}",
                        model_input=prompt,
                        target_output=original.target_output,
                        prompt=prompt,
                    )
                )
        return items
