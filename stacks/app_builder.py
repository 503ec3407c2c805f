"""Builds the CDK app: the environments file, the context options, one EvaluationStage per environment.

Context keys (`cdk synth -c key=value`, defaults in cdk.json):
  environments  the environments file (default configs/environments.yaml)
  config        an evaluation config that replaces every environment's own (e.g. configs/sample.yaml)
  env           build only the environment of this name
Relative paths are taken from the repository root, where cdk.json is.

Every problem is raised as `ConfigError` whose `.problems` are one line each; app.py prints them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from constructs import Construct

from pipeline_definitions.loading.environments import Environment, EnvironmentsFile, load_environments
from pipeline_definitions.loading.loader import ConfigError, LoadedConfig, Problem, load_config
from stacks import model_access
from stacks.components.step_image import DOCKERFILE
from stacks.delivery_stack import add_delivery
from stacks.evaluation_pipeline_stack import STEP_IMAGE_DIRECTORY
from stacks.stage import EvaluationStage, stage_id

CONTEXT_ENVIRONMENTS = "environments"
CONTEXT_CONFIG = "config"
CONTEXT_ENV = "env"
DEFAULT_ENVIRONMENTS_FILE = "configs/environments.yaml"


@dataclass(frozen=True)
class AppOptions:
    environments_file: Path
    config_override: Path | None = None
    only: str | None = None

    @classmethod
    def from_context(cls, scope: Construct, repo_root: Path) -> AppOptions:
        def path(key: str) -> Path | None:
            value = scope.node.try_get_context(key)
            if value is None or value == "":
                return None
            if not isinstance(value, str):
                raise ConfigError([Problem("cdk context", None, key, f"expected a file path, got {value!r}")])
            return repo_root / value

        only = scope.node.try_get_context(CONTEXT_ENV)
        if only is not None and not isinstance(only, str):
            raise ConfigError(
                [Problem("cdk context", None, CONTEXT_ENV, f"expected an environment name, got {only!r}")]
            )
        return cls(
            environments_file=path(CONTEXT_ENVIRONMENTS) or repo_root / DEFAULT_ENVIRONMENTS_FILE,
            config_override=path(CONTEXT_CONFIG),
            only=only or None,
        )


def select_environments(environments: EnvironmentsFile, only: str | None, path: Path) -> list[Environment]:
    if only is None:
        return list(environments.environments)
    try:
        return [environments.get(only)]
    except KeyError:
        known = ", ".join(env.name for env in environments.environments)
        raise ConfigError(
            [Problem(str(path), None, "environments", f"no environment named {only!r} (known: {known})")]
        ) from None


class StageFactory:
    """Builds the EvaluationStage of an environment; one loaded config per file, whatever uses it.

    Called as `factory(scope, environment)`, which is the shape the delivery pipeline takes.
    """

    def __init__(self, repo_root: Path, config_override: Path | None = None) -> None:
        self.repo_root = repo_root
        self.config_override = config_override
        self._loaded: dict[Path, LoadedConfig] = {}

    def config_path(self, environment: Environment) -> Path:
        return self.config_override or environment.config_path(self.repo_root)

    def load(self, environment: Environment) -> LoadedConfig:
        path = self.config_path(environment)
        if path not in self._loaded:
            self._loaded[path] = load_config(path)
        return self._loaded[path]

    def __call__(self, scope: Construct, environment: Environment) -> EvaluationStage:
        return EvaluationStage(
            scope,
            stage_id(environment),
            environment=environment,
            loaded=self.load(environment),
            repo_root=self.repo_root,
        )


def check_environments(environments: list[Environment], factory: StageFactory, path: Path) -> None:
    """What only shows at deploy time otherwise: names two environments in one account would both claim.

    Resource prefixes cannot clash: environment names are unique and neither they nor prefixes hold the
    delimiter, so `{prefix}-{name}-` differs between any two environments and starts none of the other's names.
    """
    problems: list[Problem] = []
    by_place: dict[tuple[str | None, str], list[Environment]] = defaultdict(list)
    for index, environment in enumerate(environments):
        by_place[(environment.account, environment.region)].append(environment)
        loaded = factory.load(environment)
        if model_access.deploys_containers(loaded.config) or model_access.redeploys_champion(loaded.config):
            try:
                model_access.dlc_registry_accounts(environment.region)
            except model_access.UnknownRegionError as exc:
                problems.append(Problem(str(path), None, f"environments[{index}].region", str(exc)))
    for (account, region), members in by_place.items():
        owners: dict[str, str] = {}
        for environment in members:
            for group in factory.load(environment).config.model_package_groups():
                if group in owners:
                    where = f"account {account}" if account else "the deploying account"
                    problems.append(
                        Problem(
                            str(path),
                            None,
                            "environments",
                            f"{owners[group]} and {environment.name} both create model package group {group!r} "
                            f"in {where}, {region}; give one of them another config or account",
                        )
                    )
                owners.setdefault(group, environment.name)
    if problems:
        raise ConfigError(problems)


def check_repository(repo_root: Path) -> None:
    dockerfile = repo_root / STEP_IMAGE_DIRECTORY / DOCKERFILE
    if not dockerfile.is_file():
        raise ConfigError([Problem(str(dockerfile), None, "", "missing: the step image is built from this file")])


def build_app(scope: Construct, options: AppOptions, repo_root: Path) -> list[EvaluationStage]:
    """One EvaluationStage per selected environment, in file order."""
    check_repository(repo_root)
    environments_file = load_environments(options.environments_file)
    selected = select_environments(environments_file, options.only, options.environments_file)
    factory = StageFactory(repo_root, options.config_override)
    check_environments(selected, factory, options.environments_file)
    stages = [factory(scope, environment) for environment in selected]
    if options.only is None:
        files = {CONTEXT_ENVIRONMENTS: options.environments_file}
        if options.config_override is not None:
            files[CONTEXT_CONFIG] = options.config_override
        source = options.environments_file
        add_delivery(scope, environments_file, factory, repo_root=repo_root, source=source, synth_context=files)
    return stages
