#!/usr/bin/env bash
# The README's main job (`make demo`): check a config, show its plan, synthesize its stacks offline, then
# run the whole evaluation on this machine and print where the comparison report is.
# Needs no AWS account: synth runs without credentials and the sample's candidates are recorded responses.
# Usage: scripts/demo.sh [CONFIG]   (default configs/sample.yaml; run scripts/setup.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."

config=${1:-configs/sample.yaml}
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
export AWS_EC2_METADATA_DISABLED=true
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
evalops=.venv/bin/evalops

echo "== 1/4 Validate $config"
"$evalops" validate "$config"

echo
echo "== 2/4 Plan"
"$evalops" plan "$config"

echo
echo "== 3/4 Synthesize the CDK app offline (no AWS credentials) into cdk.out/"
rm -rf cdk.out
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
  PATH="$PWD/.venv/bin:$PATH" npx cdk synth --quiet --no-notices -c config="$config"
echo "Templates:"
find cdk.out -name '*.template.json' | sort | sed 's/^/  /'
echo "cdk-nag reports (one per stack; findings not suppressed with a reason fail the synth):"
find cdk.out -name '*-NagReport.csv' | sort | sed 's/^/  /'

echo
echo "== 4/4 Run the evaluation locally (same step code as the SageMaker pipeline)"
"$evalops" run "$config" --local
