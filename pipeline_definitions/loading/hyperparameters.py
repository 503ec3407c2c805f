"""The JumpStart fine-tuning hyperparameters we know the range of, checked before a training job is started.

JumpStart's text-generation training scripts (Llama 2, Falcon, Mistral, ...) receive every hyperparameter as a
string and fail minutes into the job on a value they cannot use (`epoch: -1`, a dropout of 2). Names not in
this table are passed through unchecked: other models have other hyperparameters. A value may be given as a
YAML number/boolean or as the string JumpStart would receive ("3", "True").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["int", "float", "bool"]
BOOLEAN_STRINGS = {"true": True, "false": False}


@dataclass(frozen=True)
class Hyperparameter:
    kind: Kind
    minimum: float | None = None
    maximum: float | None = None
    # The minimum is excluded (a learning rate of 0 trains nothing).
    exclusive_minimum: bool = False
    # A value outside the range that still means something to the script ("-1: all samples").
    special: int | None = None

    def expected(self) -> str:
        if self.kind == "bool":
            return "true or false"
        low = "" if self.minimum is None else f"{'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
        high = "" if self.maximum is None else f"<= {self.maximum:g}"
        bounds = " and ".join(part for part in (low, high) if part)
        special = f" (or {self.special})" if self.special is not None else ""
        kind = "an integer" if self.kind == "int" else "a number"
        return f"{kind} {bounds}{special}".strip()

    def problem(self, value: Any) -> str | None:
        number = _value_of(self.kind, value)
        if number is None:
            return f"expected {self.expected()}, got {value!r}"
        if self.kind == "bool" or (self.special is not None and number == self.special):
            return None
        too_low = self.minimum is not None and (
            number <= self.minimum if self.exclusive_minimum else number < self.minimum
        )
        too_high = self.maximum is not None and number > self.maximum
        return f"expected {self.expected()}, got {value!r}" if too_low or too_high else None


def _value_of(kind: Kind, value: Any) -> float | bool | None:
    """The value as the script would parse it, or None when it would not parse."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
        return BOOLEAN_STRINGS.get(value.lower()) if isinstance(value, str) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = int(value) if kind == "int" else float(value)
        except ValueError:
            return None
    if kind == "int":
        return value if isinstance(value, int) else None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


HYPERPARAMETERS: dict[str, Hyperparameter] = {
    "epoch": Hyperparameter("int", minimum=1),
    "learning_rate": Hyperparameter("float", minimum=0, maximum=1, exclusive_minimum=True),
    "per_device_train_batch_size": Hyperparameter("int", minimum=1),
    "per_device_eval_batch_size": Hyperparameter("int", minimum=1),
    "gradient_accumulation_steps": Hyperparameter("int", minimum=1),
    "max_input_length": Hyperparameter("int", minimum=1, special=-1),
    "max_train_samples": Hyperparameter("int", minimum=1, special=-1),
    "max_val_samples": Hyperparameter("int", minimum=1, special=-1),
    "validation_split_ratio": Hyperparameter("float", minimum=0, maximum=1, exclusive_minimum=True),
    "train_data_split_seed": Hyperparameter("int", minimum=0),
    "seed": Hyperparameter("int", minimum=0),
    "preprocessing_num_workers": Hyperparameter("int", minimum=1),
    "lora_r": Hyperparameter("int", minimum=1),
    "lora_alpha": Hyperparameter("int", minimum=1),
    "lora_dropout": Hyperparameter("float", minimum=0, maximum=1),
    "warmup_ratio": Hyperparameter("float", minimum=0, maximum=1),
    "weight_decay": Hyperparameter("float", minimum=0),
    "instruction_tuned": Hyperparameter("bool"),
    "chat_dataset": Hyperparameter("bool"),
    "int8_quantization": Hyperparameter("bool"),
    "enable_fsdp": Hyperparameter("bool"),
    "add_input_output_demarcation_key": Hyperparameter("bool"),
}


def hyperparameter_problem(name: str, value: Any) -> str | None:
    """Why `value` cannot be the hyperparameter `name`; None when it can or the name is not in the table."""
    spec = HYPERPARAMETERS.get(name)
    return spec.problem(value) if spec is not None else None
