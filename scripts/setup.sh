#!/usr/bin/env bash
# Sets up everything the project needs on a fresh machine: a virtualenv with the pinned Python
# packages (torch CPU first, so fmeval does not pull a CUDA build) and the pinned CDK CLI from npm.
# Idempotent: it re-installs only when a requirements or lock file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3
[ -x .venv/bin/python ] || "$python" -m venv .venv

stamp=.venv/.evalops-setup
want=$(cat requirements/*.txt pyproject.toml package.json package-lock.json scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -d node_modules/aws-cdk ]; then
  echo "== setting up .venv and node_modules (first run takes a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet torch==2.13.0
  .venv/bin/python -m pip install --quiet -r requirements/dev.txt -c requirements/constraints.txt
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
fi
