# Two commands on a fresh machine: `make synth` and `make test`. Each installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CDK := node_modules/.bin/cdk
ENV ?= dev

# Offline, quiet, reproducible synth: no telemetry, no notices, no version check, no Node EOL banner from jsii.
export CDK_DISABLE_CLI_TELEMETRY := true
export CDK_DISABLE_VERSION_CHECK := true
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export SAGEMAKER_TELEMETRY_OPT_OUT := true
export PYSPARK_PYTHON := $(abspath $(PY))

.PHONY: synth test demo rehearse e2e bench checkov clean install install-dev lambda-deps

$(VENV)/.synth-installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt requirements.txt $(VENV)/.synth-installed
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Third-party packages of the model-in-Lambda function, built for Lambda's platform from wheels (no Docker), as one
# reproducible zip that the layer asset uploads as is (build/lambda-deps.inputs.sha256: the hash of its inputs).
build/lambda-deps.zip: lambda_src/inference/requirements.txt scripts/build_lambda_deps.sh $(VENV)/.synth-installed
	bash scripts/build_lambda_deps.sh lambda_src/inference/requirements.txt build/lambda-deps
	touch $@

lambda-deps: build/lambda-deps.zip

install: $(VENV)/.synth-installed node_modules/.installed build/lambda-deps.zip
install-dev: install $(VENV)/.dev-installed

## Synthesize every stack of ENV (default dev) into cdk.out/, offline.
synth: install
	rm -rf cdk.out
	env -u AWS_PROFILE $(CDK) synth --quiet --no-notices -c env=$(ENV)
	@echo "Templates in cdk.out/:" && ls cdk.out/*.template.json | sed 's/^/  /'

## Run the whole test suite (runtime code, constructs, stacks, compliance).
test: install-dev
	$(PY) -m pytest

## Rehearse the whole MLOps loop locally, without an AWS account.
demo: install-dev
	$(PY) -m demo

## Rehearse what is deployed: synthesize ENV with every serving stack into build/rehearse/cdk.out, then run each
## cloud-side entry point from those assets, as its service runs it, against a local moto account with IAM on.
REHEARSE_OUT := build/rehearse
rehearse: install-dev
	rm -rf $(REHEARSE_OUT)/cdk.out
	env -u AWS_PROFILE $(CDK) synth --quiet --no-notices -c env=$(ENV) -c serving=all -o $(REHEARSE_OUT)/cdk.out
	$(PY) -m rehearsal --cdk-out $(REHEARSE_OUT)/cdk.out --report-dir $(REHEARSE_OUT)/report

## checkov on ENV's templates (every serving stack included): the failure rate and each skip's reason. checkov lives
## in its own virtualenv (its dependencies are not the app's).
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
CHECKOV_OUT := build/checkov
$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q checkov==$(CHECKOV_VERSION)
	touch $@

checkov: install $(CHECKOV_VENV)/.installed
	rm -rf $(CHECKOV_OUT)/cdk.out
	env -u AWS_PROFILE $(CDK) synth --quiet --no-notices -c env=$(ENV) -c serving=all -o $(CHECKOV_OUT)/cdk.out
	$(PY) scripts/checkov_report.py --cdk-out $(CHECKOV_OUT)/cdk.out --checkov $(CHECKOV_VENV)/bin/checkov \
		--json $(CHECKOV_OUT)/$(ENV)-summary.json

## End-to-end run against a sandbox account (needs AWS credentials): deploy, run the loop, report, tear down.
E2E_TEARDOWN ?= stacks
e2e: install
	$(PY) -m scripts.e2e --env $(ENV) --yes --teardown $(E2E_TEARDOWN) --report-dir e2e-report

## Benchmarks (not part of the tests): synth time and its breakdown, inference latency. BENCH_LABEL names the result.
BENCH_LABEL ?= current
bench: install-dev
	$(PY) benchmarks/inference_latency.py
	bash benchmarks/synth_time.sh
	$(PY) benchmarks/synth_breakdown.py --env $(ENV) --label $(BENCH_LABEL)
	$(PY) benchmarks/synth_breakdown.py --env $(ENV) --serving all --skip-cli --label $(BENCH_LABEL)-serving

clean:
	rm -rf cdk.out build .pytest_cache
