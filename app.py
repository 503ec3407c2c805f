#!/usr/bin/env python3
"""The CDK app: one evaluation Stage per environment of the environments file (see stacks/app_builder.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from pipeline_definitions.loading.loader import ConfigError
from stacks.app_builder import AppOptions, build_app

REPO_ROOT = Path(__file__).resolve().parent


def main() -> int:
    app = cdk.App()
    try:
        stages = build_app(app, AppOptions.from_context(app, REPO_ROOT), REPO_ROOT)
    except ConfigError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    # With annotations in the validation report (cdk.json), cdk synth would not show these.
    for warning in dict.fromkeys(w for stage in stages for w in stage.guardrails.warnings):
        print(f"warning: {warning}", file=sys.stderr)
    # Stacks outside Stages; each EvaluationStage checks its own (app aspects do not reach into Stages).
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
