#!/usr/bin/env bash
# Wall time and peak memory of a full offline synth of one environment (default dev): `bash benchmarks/synth_time.sh prod`
set -euo pipefail
cd "$(dirname "$0")/.."
env_name="${1:-dev}"
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 CDK_DISABLE_CLI_TELEMETRY=true SAGEMAKER_TELEMETRY_OPT_OUT=true
rm -rf cdk.out
/usr/bin/time -v node_modules/.bin/cdk synth --quiet --no-notices -c env="$env_name" 2>&1 \
  | grep -E "Elapsed \(wall clock\)|Maximum resident set size" || true
ls cdk.out/*.template.json | wc -l | xargs echo "templates:"
