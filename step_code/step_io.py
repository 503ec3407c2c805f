"""Reading a step's config and input files, writing its result, and exiting with one clear line on failure."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ValidationError

from step_code.aws_resources import ControlPlaneError, client_error_line
from step_code.contract.config import Config, ModelConfig

ResultT = TypeVar("ResultT", bound=BaseModel)

logger = logging.getLogger("evalops.step")


def _validation_line(path: Path, error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {error.error_count() - 1} more problems)" if error.error_count() > 1 else ""
    return f"{path}: {location}: {first['msg']}{more}"


def read_model(path: Path, model_type: type[ResultT]) -> ResultT:
    """A JSON file parsed into `model_type`; any problem becomes a `ControlPlaneError` naming file and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ControlPlaneError(f"{path}: file not found") from None
    except OSError as exc:
        raise ControlPlaneError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return model_type.model_validate_json(text)
    except ValidationError as exc:
        raise ControlPlaneError(_validation_line(path, exc)) from None


def read_config(path: Path) -> Config:
    return read_model(path, Config)


def config_model(config: Config, name: str, config_path: Path) -> ModelConfig:
    try:
        return config.model(name)
    except KeyError:
        known = ", ".join(m.name for m in config.models)
        raise ControlPlaneError(f"{config_path}: models: no model named {name!r} (known: {known})") from None


def write_model(output_dir: Path, file_name: str, result: BaseModel) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / file_name
    path.write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def run_step(step: str, body: Callable[[], None]) -> int:
    """Run a step body; failures the step anticipates, and AWS errors, end as one line on stderr and exit 1."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        body()
    except ControlPlaneError as exc:
        print(f"{step}: error: {exc}", file=sys.stderr)
        return 1
    except ClientError as exc:
        print(f"{step}: error: {client_error_line(exc)}", file=sys.stderr)
        return 1
    except BotoCoreError as exc:
        print(f"{step}: error: {exc}", file=sys.stderr)
        return 1
    return 0
