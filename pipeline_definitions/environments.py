"""Deployment environments as data: `configs/environments.yaml`, one CDK Stage per entry."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENV_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,14}$")
PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
ACCOUNT_RE = re.compile(r"^\d{12}$")
REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


class Environment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Short environment name, part of every resource name.")
    account: str | None = Field(default=None, description="12-digit AWS account id (None: the CLI's account).")
    region: str = "us-east-1"
    prefix: str = Field(default="evalops", description="Name prefix: resources are named {prefix}-{name}-...")
    config: str = Field(description="Evaluation config this environment runs, relative to the repo root.")
    manual_approval: bool = Field(default=False, description="Delivery: ask for approval before deploying here.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ENV_NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a valid environment name (expected 1-15 of a-z 0-9 -, starting a-z)")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not PREFIX_RE.match(value):
            raise ValueError(f"{value!r} is not a valid name prefix (expected 1-16 of a-z 0-9 -, starting a-z)")
        return value

    @field_validator("account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None and not ACCOUNT_RE.match(value):
            raise ValueError(f"{value!r} is not an AWS account id (expected 12 digits)")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not REGION_RE.match(value):
            raise ValueError(f"{value!r} is not an AWS region name (expected e.g. us-east-1)")
        return value

    @property
    def resource_prefix(self) -> str:
        """`{prefix}-{name}-`: the start of every name this environment creates; IAM policies match on it."""
        return f"{self.prefix}-{self.name}-"

    def config_path(self, repo_root: Path) -> Path:
        return repo_root / self.config


class EnvironmentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    environments: list[Environment] = Field(min_length=1)

    @field_validator("environments")
    @classmethod
    def _unique(cls, value: list[Environment]) -> list[Environment]:
        names = [env.name for env in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate environment names: {', '.join(duplicates)}")
        return value

    def get(self, name: str) -> Environment:
        for env in self.environments:
            if env.name == name:
                return env
        raise KeyError(name)
