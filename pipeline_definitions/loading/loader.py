"""Load a config file: YAML with line numbers, the pydantic model, cross-field checks, local files.

Every problem is reported, one line each, as `file:line: key.path: message`; nothing here prints a traceback.
Warnings (the config loads, but a pipeline run would likely go wrong) use the same form in `LoadedConfig.warnings`.

Local files (the dataset, recorded responses) are looked up first in the prompt catalog folder (`catalog_dir`,
default `<repo root>/prompt_catalog`, the repo root being the nearest folder above the config holding
`cdk.json`), then beside the config. Pipeline steps receive one folder as their catalog input, so every local
file must sit inside that folder: the prompt catalog when it exists, else the config's own folder. The
normalized config names local files relative to that folder.

Relative fine-tuning data paths are read by the training job from the uploaded catalog folder (the steps'
EVALOPS_DATA_URI), so one that names nothing in that folder is warned about: the reference sample's
`train_dataset` is such a path, and it must still load.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from pipeline_definitions.loading.auto_shards import resolve_auto_shards
from pipeline_definitions.loading.catalog_shape import catalog_shape_problem
from pipeline_definitions.loading.finetuning_data import check_finetuning_data
from pipeline_definitions.loading.sample_compat import sdk_defaults_message, translate_register_config
from pipeline_definitions.loading.validation import (
    Finding,
    Loc,
    Sections,
    nonfinite_findings,
    placeholder_findings,
    validate,
    validate_sections,
)
from pipeline_definitions.loading.yaml_limits import MAX_DEPTH, YamlLimitError, check_expansion, read_regular_file
from step_code.contract.config import Config
from step_code.contract.locations import is_s3

REPO_MARKER = "cdk.json"
CATALOG_FOLDER = "prompt_catalog"
# What the catalog upload leaves out: hidden files and caches. The globs are the CDK asset's `exclude`;
# the pattern is the same rule for one path component, used to check what will be uploaded.
CATALOG_EXCLUDE = (".*", "**/.*", "**/__pycache__")
NOT_UPLOADED = re.compile(r"^(\..*|__pycache__)$")
# Keys with two accepted spellings: the loader finds either one in the YAML.
KEY_SPELLINGS = {"finetuning_config": "finetuning", "finetuning": "finetuning_config"}
_KEY_PATH_PREFIX = re.compile(r"^(?P<path>[A-Za-z_]\w*(?:\[\d+\]|\.[A-Za-z_]\w*)*)(?P<colon>:?) ")
_IDENTIFIER = re.compile(r"^[A-Za-z_]\w*$")
# Values quoted in a message are cut to SHOWN_CHARS (a 1 MB value would otherwise be echoed whole), and a
# whole message to MAX_MESSAGE_CHARS.
SHOWN_CHARS = 60
MAX_MESSAGE_CHARS = 1000
# A quoted value starts where no word character precedes its quote and ends where none follows its closing one
# (so the text between two short quoted values is never taken for one).
_LONG_QUOTED = re.compile(rf"(?<!\w)(?:'[^'\n]{{{SHOWN_CHARS + 1},}}'|\"[^\"\n]{{{SHOWN_CHARS + 1},}}\")(?!\w)")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    key_path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.key_path}: {self.message}" if self.key_path else f"{where}: {self.message}"


class ConfigError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


class SdkDefaultsFileError(ConfigError):
    """The file is a SageMaker SDK defaults file, not an evaluation config (the CLI exits with its own code)."""


class LocationNotFoundError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config; `config` names local files relative to `catalog_dir`."""

    config: Config
    path: Path
    catalog_dir: Path | None
    dataset_location: str
    config_sha256: str
    warnings: list[str] = field(default_factory=list)
    # How `shards: auto` was resolved (for `evalops plan`), None without auto.
    auto_shards: str | None = None

    def normalized_json(self) -> str:
        """The config.json every step receives (`Config.model_validate_json` reads it back)."""
        return _normalized_json(self.config)

    def resolve_location(self, location: str) -> str:
        """An s3:// URI unchanged, else the absolute path of a local file (catalog first, then beside the config)."""
        if is_s3(location):
            return location
        places = _search_places(location, self.catalog_dir, self.path.parent)
        for candidate in places:
            if candidate.is_file():
                return str(candidate.resolve())
        raise LocationNotFoundError(_not_found_message(location, places))


def load_config(path: str | Path, *, catalog_dir: Path | None = None) -> LoadedConfig:
    """Load and validate a config file; raises ConfigError listing every problem found."""
    display = str(path)
    config_path = Path(path).resolve()
    root, data = read_yaml_mapping(path, "settings (pipeline, dataset, models, ...)")
    index = YamlIndex(root)
    sdk_defaults = sdk_defaults_message(data)
    if sdk_defaults is not None:
        raise SdkDefaultsFileError([Problem(display, None, "", sdk_defaults)])
    data, sample_findings = translate_register_config(data)
    findings = index.duplicate_keys() + placeholder_findings(data) + nonfinite_findings(data) + sample_findings
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        # Non-finite numbers are reported at every key by nonfinite_findings already.
        errors = [error for error in exc.errors(include_url=False) if error["type"] != "finite_number"]
        findings += [_finding_from_error(error) for error in errors]
        findings += validate_sections(_valid_sections(data))
        raise ConfigError(index.problems(display, findings)) from None

    wanted = _catalog_path(config_path, catalog_dir)
    catalog = wanted if wanted.is_dir() else None
    location = config.dataset.input_data_location
    dataset_file = None if is_s3(location) else _find_file(location, catalog, config_path.parent)
    auto_shards = resolve_auto_shards(config, location, dataset_file)
    config = auto_shards.config
    findings += auto_shards.findings + validate(config)
    if catalog_dir is not None and catalog is None:
        findings.append(Finding((), f"prompt catalog folder {catalog_dir} does not exist"))
    files = _LocalFiles(config_path.parent, catalog, wanted)
    config = files.normalize(config)
    findings += files.findings
    catalog_dir = files.root if files.used else catalog
    warnings = _finetuning_data_warnings(config, catalog_dir)
    finetuning_data = check_finetuning_data(config, catalog_dir)
    config = finetuning_data.config
    findings += finetuning_data.errors
    if findings:
        raise ConfigError(index.problems(display, findings))

    normalized = _normalized_json(config)
    warnings += finetuning_data.warnings
    return LoadedConfig(
        config=config,
        path=config_path,
        catalog_dir=catalog_dir,
        dataset_location=files.dataset_location,
        config_sha256=hashlib.sha256(normalized.encode()).hexdigest(),
        warnings=[str(problem) for problem in index.problems(display, warnings)],
        auto_shards=auto_shards.note,
    )


def _valid_sections(data: dict[str, Any]) -> Sections:
    """Each top-level section that validates on its own, for the checks that need only those."""
    valid: dict[str, Any] = {}
    for name in ("pipeline", "dataset", "models", "algorithms", "selection", "pricing"):
        if name in data:
            try:
                valid[name] = TypeAdapter(Config.model_fields[name].annotation).validate_python(data[name])
            except ValidationError:
                continue
    return Sections(**valid)


def _finetuning_data_warnings(config: Config, catalog: Path | None) -> list[Finding]:
    """Relative fine-tuning paths that name no file, and no folder holding one, in the catalog folder.

    With the dataset on S3 a relative path is an error already (validation), as no catalog is uploaded; a local
    dataset always has a catalog folder (the config's own folder when there is no prompt catalog).
    """
    if catalog is None or is_s3(config.dataset.input_data_location):
        return []
    findings: list[Finding] = []
    for index, model in enumerate(config.models):
        if model.finetuning is None:
            continue
        paths = {"train_data_path": model.finetuning.train_data_path}
        if model.finetuning.validation_data_path is not None:
            paths["validation_data_path"] = model.finetuning.validation_data_path
        for key, path in paths.items():
            if is_s3(path) or _uploads_data(catalog, path):
                continue
            findings.append(
                Finding(
                    ("models", index, "finetuning", key),
                    f"{path!r} is neither a file nor a non-empty folder in the prompt catalog folder "
                    f"{catalog}{os.sep}; the training job reads it "
                    "from the uploaded catalog and would find no data (add it there or use an s3:// URI)",
                )
            )
    return findings


def _uploads_data(catalog: Path, path: str) -> bool:
    """Whether the catalog upload holds `path` (as the finetune step joins it: leading "/" dropped) with data."""
    root = catalog.resolve()
    target = (root / path.lstrip("/")).resolve()
    if not target.is_relative_to(root) or _not_uploaded(target.relative_to(root)):
        return False
    if target.is_file():
        return True
    return target.is_dir() and any(
        item.is_file() and not _not_uploaded(item.relative_to(target)) for item in target.rglob("*")
    )


def _not_uploaded(relative: Path) -> bool:
    return any(NOT_UPLOADED.match(part) for part in relative.parts)


def _normalized_json(config: Config) -> str:
    return config.model_dump_json(by_alias=False)


def repo_root(config_path: Path) -> Path:
    """The nearest folder at or above the config that holds cdk.json, else the config's folder."""
    folder = config_path.resolve().parent
    return next((p for p in (folder, *folder.parents) if (p / REPO_MARKER).is_file()), folder)


def _catalog_path(config_path: Path, catalog_dir: Path | None) -> Path:
    return Path(catalog_dir).resolve() if catalog_dir is not None else repo_root(config_path) / CATALOG_FOLDER


def _search_places(location: str, catalog: Path | None, config_dir: Path) -> list[Path]:
    if Path(location).is_absolute():
        return [Path(location)]
    places = [catalog / location] if catalog is not None else []
    if catalog is None or catalog.resolve() != config_dir.resolve():
        places.append(config_dir / location)
    return places


def _find_file(location: str, catalog: Path | None, config_dir: Path) -> Path | None:
    return next((place for place in _search_places(location, catalog, config_dir) if place.is_file()), None)


def _not_found_message(location: str, places: list[Path], missing_catalog: Path | None = None) -> str:
    looked = [str(place.parent) + os.sep for place in places]
    if missing_catalog is not None and not Path(location).is_absolute():
        looked.insert(0, f"{(missing_catalog / location).parent}{os.sep} (no such folder)")
    return f"{location!r} not found (looked in {' and '.join(looked)})"


class _LocalFiles:
    """Finds the config's local files and rewrites their locations relative to the catalog folder."""

    def __init__(self, config_dir: Path, catalog: Path | None, wanted_catalog: Path) -> None:
        self.config_dir = config_dir
        self.catalog = catalog
        self.missing_catalog = None if catalog is not None else wanted_catalog
        # The one folder steps receive: files outside it would be missing in a pipeline run.
        self.root = catalog if catalog is not None else config_dir
        self.findings: list[Finding] = []
        self.used = False
        self.dataset_location = ""

    def normalize(self, config: Config) -> Config:
        dataset_location = self._resolve(("dataset", "input_data_location"), config.dataset.input_data_location)
        self.dataset_location = dataset_location
        if not is_s3(dataset_location) and Path(dataset_location).is_file():
            problem = catalog_shape_problem(Path(dataset_location), config.dataset.dataset_mime_type)
            if problem is not None:
                self.findings.append(Finding(("dataset", "input_data_location"), problem))
        models = list(config.models)
        # With the dataset on S3 a local responses file is an error already (validation): nothing to resolve.
        dataset_on_s3 = is_s3(dataset_location)
        for index, model in enumerate(config.models):
            if not model.provider.calls_model and model.responses_location is not None and not dataset_on_s3:
                location = self._resolve(("models", index, "responses_location"), model.responses_location)
                models[index] = model.model_copy(update={"responses_location": self._relative(location)})
        dataset = config.dataset.model_copy(update={"input_data_location": self._relative(dataset_location)})
        return config.model_copy(update={"dataset": dataset, "models": models})

    def _resolve(self, loc: Loc, location: str) -> str:
        if is_s3(location):
            return location
        self.used = True
        places = _search_places(location, self.catalog, self.config_dir)
        found = next((place.resolve() for place in places if place.is_file()), None)
        if found is None:
            self.findings.append(Finding(loc, _not_found_message(location, places, self.missing_catalog)))
            return location
        if not found.is_relative_to(self.root.resolve()):
            self.findings.append(
                Finding(
                    loc,
                    f"{location!r} is at {found}, outside the prompt catalog folder {self.root}{os.sep}; steps "
                    "receive only that folder, so move the file into it or use an s3:// URI",
                )
            )
        return str(found)

    def _relative(self, location: str) -> str:
        path = Path(location)
        if is_s3(location) or not path.is_absolute() or not path.is_relative_to(self.root.resolve()):
            return location
        return path.relative_to(self.root.resolve()).as_posix()


def read_yaml_mapping(path: str | Path, what: str) -> tuple[yaml.Node, dict[str, Any]]:
    """A YAML file holding a mapping of `what`, and its node tree (for line numbers); ConfigError if it is not.

    Reading is bounded (`yaml_limits`): regular files only, a size cap, aliases expanded to a bounded size.
    """
    display = str(path)
    try:
        text = read_regular_file(Path(path).resolve())
    except FileNotFoundError:
        raise ConfigError([Problem(display, None, "", "no such file")]) from None
    except YamlLimitError as exc:
        raise ConfigError([Problem(display, None, "", str(exc))]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [Problem(display, None, "", f"cannot read the file ({exc.__class__.__name__}: {_cut(str(exc))})")]
        ) from None
    try:
        root, data = _parse_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError([Problem(display, line, "", f"invalid YAML: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(display, None, "", f"invalid YAML: {_cut(str(exc))}")]) from None
    except YamlLimitError as exc:
        raise ConfigError([Problem(display, exc.line, "", str(exc))]) from None
    except RecursionError:
        raise ConfigError([Problem(display, None, "", f"nested more than {MAX_DEPTH} levels deep; refused")]) from None
    if not isinstance(data, dict) or root is None:
        line = root.start_mark.line + 1 if root is not None else 1
        raise ConfigError([Problem(display, line, "", f"expected a mapping of {what}")])
    return root, data


def _parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data built from that same tree, once its size is checked."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        check_expansion(root)
        return root, loader.construct_document(root)
    finally:
        loader.dispose()


class YamlIndex:
    """Maps key paths to YAML lines, following the spellings the file actually uses."""

    def __init__(self, root: yaml.Node) -> None:
        self.root = root
        # Per mapping node: key -> (value node, line) of its last occurrence, built on first use, so that
        # locating thousands of findings in one mapping stays linear.
        self._keys: dict[int, dict[str, tuple[yaml.Node, int]]] = {}

    def locate(self, loc: Loc) -> tuple[int, Loc]:
        """The line of the deepest key of `loc` present in the file, and `loc` in the file's spelling."""
        node: yaml.Node | None = self.root
        line = self.root.start_mark.line + 1
        spelled: list[str | int] = []
        for position, part in enumerate(loc):
            found = self._child(node, part)
            if found is None:
                spelled.extend(loc[position:])
                break
            key, node, line = found
            spelled.append(key)
        return line, tuple(spelled)

    def _child(self, node: yaml.Node | None, part: str | int) -> tuple[str | int, yaml.Node, int] | None:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            keys = self._keys.get(id(node))
            if keys is None:
                keys = self._keys[id(node)] = {
                    key_node.value: (value_node, key_node.start_mark.line + 1)
                    for key_node, value_node in node.value
                    if isinstance(key_node, yaml.ScalarNode)
                }
            for spelling in (part, KEY_SPELLINGS.get(part, part)):
                if spelling in keys:
                    return spelling, *keys[spelling]
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            item = node.value[part]
            return part, item, item.start_mark.line + 1
        return None

    def duplicate_keys(self) -> list[Finding]:
        findings: list[Finding] = []
        self._duplicates(self.root, (), findings)
        return findings

    def _duplicates(self, node: yaml.Node, loc: Loc, findings: list[Finding]) -> None:
        if isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                # A merge key (`<<: *base`) puts the base's pairs before the mapping's own ones, which may
                # override them: only keys written inside this mapping can repeat one another (the base's
                # pairs are checked where the base is written).
                if not _inside(key_node, node):
                    continue
                if key in first_line:
                    findings.append(
                        Finding(
                            (*loc, key),
                            f"duplicate key {key!r} (first given on line {first_line[key]})",
                            line=key_node.start_mark.line + 1,
                        )
                    )
                else:
                    first_line[key] = key_node.start_mark.line + 1
                self._duplicates(value_node, (*loc, key), findings)
        elif isinstance(node, yaml.SequenceNode):
            for position, item in enumerate(node.value):
                self._duplicates(item, (*loc, position), findings)

    def problems(self, file: str, findings: list[Finding]) -> list[Problem]:
        # A dict keeps the first of equal problems in order, in time linear in their number.
        problems: dict[Problem, None] = {}
        for finding in findings:
            loc, message = _relocate(finding)
            line, spelled = self.locate(loc)
            problems[Problem(file, (finding.line or line) if loc else None, key_path(spelled), _cut(message))] = None
        return sorted(problems, key=lambda p: p.line or 0)


def _cut(message: str) -> str:
    """`message` with each long quoted value cut to SHOWN_CHARS, and at most MAX_MESSAGE_CHARS long."""
    message = _LONG_QUOTED.sub(lambda match: match[0][:SHOWN_CHARS] + "..." + match[0][0], message)
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 3] + "..."


def _inside(part: yaml.Node, node: yaml.Node) -> bool:
    return node.start_mark.index <= part.start_mark.index < node.end_mark.index


def key_path(loc: Loc) -> str:
    """`("models", 1, "deployment_config")` -> `models[1].deployment_config`."""
    out = ""
    for part in loc:
        if isinstance(part, str) and len(part) > SHOWN_CHARS:
            out += f"[{part[:SHOWN_CHARS]!r}...]"
        elif isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _parse_key_path(text: str) -> Loc:
    parts: list[str | int] = []
    for name, index in re.findall(r"([A-Za-z_]\w*)|\[(\d+)\]", text):
        parts.append(name if name else int(index))
    return tuple(parts)


def _relocate(finding: Finding) -> tuple[Loc, str]:
    """A model-level message that starts with a key path is about that key: point at it.

    `models[1].name: duplicate ...` (a path and a colon) moves the path out of the message;
    `finetuning is only supported ...` (a field of the model at hand) keeps the message as it is.
    """
    match = _KEY_PATH_PREFIX.match(finding.message)
    if match is None:
        return finding.loc, finding.message
    sub = _parse_key_path(match["path"])
    if match["colon"]:
        return (*finding.loc, *sub), finding.message[match.end() :]
    if _is_field_path(finding.loc, sub):
        return (*finding.loc, *sub), finding.message
    return finding.loc, finding.message


def _is_field_path(loc: Loc, sub: Loc) -> bool:
    model = _model_at(loc)
    for part in sub:
        if model is None or not isinstance(part, str):
            return False
        field = _field(model, part)
        if field is None:
            return False
        model = _model_class(_unwrap(field.annotation))
    return True


def _field(model: type[BaseModel], name: str) -> Any:
    for field_name, info in model.model_fields.items():
        if name in (field_name, info.alias):
            return info
    return None


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X."""
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    if type(None) in getattr(annotation, "__args__", ()) and len(args) == 1:
        return args[0]
    return annotation


def _model_class(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at `loc` (None for lists, dicts of values, scalars)."""
    current: Any = Config
    for part in loc:
        model = _model_class(current)
        if model is not None:
            field = _field(model, part) if isinstance(part, str) else None
            if field is None:
                return None
            current = _unwrap(field.annotation)
            continue
        args: tuple[Any, ...] = getattr(current, "__args__", ())
        origin = getattr(current, "__origin__", None)
        if origin in (list, tuple) and isinstance(part, int) and args:
            current = _unwrap(args[0])
        elif origin is dict and len(args) == 2:
            current = _unwrap(args[-1])
        else:
            return None
    return _model_class(current)


def _finding_from_error(error: Any) -> Finding:
    loc: Loc = tuple(part for part in error["loc"] if part != "[key]")
    kind = error["type"]
    if kind == "missing":
        return Finding(loc, f"required key {loc[-1]!r} is missing")
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        expected = ", ".join(model.model_fields) if model is not None else ""
        return Finding(loc, f"unknown key {loc[-1]!r}" + (f" (expected one of: {expected})" if expected else ""))
    if kind in ("value_error", "assertion_error") and "error" in error.get("ctx", {}):
        return Finding(loc, str(error["ctx"]["error"]))
    message = str(error["msg"])
    message = re.sub(r"a valid dictionary( or instance of \w+)?", "a mapping", message)
    message = message.replace("a valid list", "a list")
    if message.startswith("Input should be "):
        message = "expected " + message[len("Input should be ") :]
    return Finding(loc, f"{message}, got {_describe(error.get('input'))}")


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
