"""End-to-end run of the platform against a sandbox AWS account: deploy, feed, build, approve, serve, report, tear down.

    python -m scripts.e2e --env dev --yes [--teardown none|stacks|all] [--timeout-minutes 90]
        [--report-dir e2e-report] [--model NAME] [--region REGION] [--rows 5] [--keep-on-failure] [--allow-prod]

It runs, with the credentials of the environment (AWS_PROFILE etc.), what a user does by hand:

1. **Preflight**: refuses without ``--yes``; prints the caller identity (STS); refuses when the config pins another
   ``account`` or ``region``, when the environment is named like production (unless ``--allow-prod``), when the
   platform pipeline owns the environment, or when the account/region is not CDK-bootstrapped.
2. **Deploy**: ``cdk deploy --all -c env=<env> --require-approval never --outputs-file <report-dir>/cdk-outputs.json``
   (shared, data and model stacks; no serving stack: those come from the model's deploy pipeline).
3. **Upload**: ``data/abalone.csv`` (UCI Abalone, CC BY 4.0, see data/README.md) to
   ``s3://<raw bucket>/<dataset>/e2e-<run id>.csv``; the bucket comes from the export ``<prefix>-lake-raw-name``.
4. **Waits**, each bounded by ``--timeout-minutes``, polling with backoff, printing progress, failing with one line:
   the Glue job run started after the upload (SUCCEEDED; FAILED/ERROR/TIMEOUT/STOPPED stop with its ErrorMessage);
   the SageMaker pipeline execution started after that run (Succeeded; Failed stops with its FailureReason and the
   failed step); the package it registered (PendingManualApproval), which is then **approved**; the deploy pipeline
   execution started by the approval reaching "staging ready" (``Smoke-<first stage>`` Succeeded, or the manual
   approval before the last stage InProgress).
5. **Invoke** the first stage (staging) with the first ``--rows`` rows of the sample data: the SigV4-signed Function
   URL and/or InvokeEndpoint, through ``cicd_scripts.smoke_test``'s helpers.
6. **Report**: ``<report-dir>/e2e-report.json`` and ``e2e-report.md``: timings per stage, package ARN, the metric from
   the package's ModelMetrics, predictions next to the actual values, what teardown removed.
7. **Teardown** (``--teardown``, default ``stacks``; also after a failed stage unless ``--keep-on-failure``):
   ``stacks`` stops what is still running (the Glue run, the pipeline execution, the deploy pipeline execution),
   destroys the serving stacks the deploy pipeline created (``cdk destroy --exclusively -c serving=all ...``), then
   every stack of the app (``cdk destroy --all --force``). ``all`` also removes what the stacks retain: it lists the
   stacks' resources (ListStackResources) *before* destroying them, then empties (every object version and delete
   marker) and deletes the buckets, deletes the log groups, the model packages and their groups, and schedules the
   KMS keys for deletion (7 days, KMS's minimum), listing each in the report. ``none`` leaves everything.

Exit codes: 0 success; 1 a stage failed (or teardown left something); 2 refused (preflight, arguments);
3 a wait timed out.

Designed for tests: :class:`E2ERun` takes a boto3 session factory, ``run_cdk(args) -> outputs`` and a clock/sleep,
so ``tests/runtime/test_e2e.py`` drives the whole orchestration against moto.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from cicd_scripts import smoke_test
from platform_config.names import Names as PlatformNames
from cicd_scripts._common import CLIENT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, error_code, error_message

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / "data" / "abalone.csv"
DATA_ATTRIBUTION = (
    "UCI Machine Learning Repository 'Abalone' (Nash, Sellers, Talbot, Cawthorn and Ford, 1994), CC BY 4.0; "
    "see data/README.md"
)
TEARDOWN_MODES = ("none", "stacks", "all")
KMS_MIN_PENDING_DAYS = 7  # ScheduleKeyDeletion accepts 7-30 days
PROD_NAME = re.compile(r"prod|prd|^live$")

GLUE_FAILED = {"FAILED", "ERROR", "TIMEOUT", "STOPPED", "EXPIRED"}
PIPELINE_FAILED = {"Failed", "Stopped", "Stopping"}
DEPLOY_FAILED = {"Failed", "Stopped", "Stopping", "Superseded", "Cancelled"}


# ------------------------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------------------------
class E2EError(Exception):
    """A stage failed: ``str(exc)`` is the one line printed; ``exit_code`` what the command returns."""

    exit_code = EXIT_FAILED

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class WaitTimeout(E2EError):
    exit_code = EXIT_TIMEOUT


class Refused(E2EError):
    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__("preflight", message)


# ------------------------------------------------------------------------------------------------------------------
# Names: the run's selection over platform_config.names (the one names module every layer uses; no CDK import)
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Names:
    platform: PlatformNames
    dataset: str
    model: str
    stages: tuple[str, ...]
    served: bool
    all_models: tuple[str, ...] = ()
    all_served: tuple[tuple[str, str], ...] = ()
    workstation: bool = False

    @classmethod
    def of(cls, config: Any, model: Any) -> "Names":
        return cls(
            platform=config.names,
            dataset=config.data_lake.dataset,
            model=model.name,
            stages=tuple(s.name for s in model.stages),
            served=bool(model.endpoint.enabled or model.lambda_.enabled),
            all_models=tuple(m.name for m in config.models),
            all_served=tuple(
                (m.name, s.name) for m in config.models if m.endpoint.enabled or m.lambda_.enabled for s in m.stages
            ),
            workstation=bool(config.workstation.enabled),
        )

    @property
    def prefix(self) -> str:
        return self.platform.prefix

    @property
    def etl_job(self) -> str:
        return self.platform.etl_job(self.dataset)

    @property
    def pipeline(self) -> str:  # SageMaker pipeline and model package group
        return self.platform.model_resource(self.model)

    @property
    def deploy_pipeline(self) -> str:  # mlops_constructs.model_cicd.ModelDeployCd
        return self.platform.deploy_pipeline(self.model)

    def raw_export(self) -> str:  # stacks.common.LakeReferences
        return self.platform.lake_export("raw", "name")

    def serving_stack(self, model: str, stage: str) -> str:
        return self.platform.serving_stack(model, stage)

    def core_stacks(self) -> list[str]:
        """The stacks ``cdk deploy --all`` creates, in deploy order."""
        names = [self.platform.stack("shared"), self.platform.stack("data")]
        names += [self.platform.model_stack(m) for m in self.all_models]
        if self.workstation:
            names.append(self.platform.stack("workstation"))
        return names

    def serving_stacks(self) -> list[str]:
        return [self.serving_stack(m, s) for m, s in self.all_served]

    def group_of_stack(self, stack: str) -> Optional[str]:
        """The model package group a model stack declares (``<prefix>-<model>``)."""
        marker = self.platform.model_stack("")
        return self.platform.model_resource(stack[len(marker):]) if stack.startswith(marker) else None

    # mlops_constructs.model_cicd: stage and action names of the deploy pipeline
    def smoke_stage(self, stage: str) -> str:
        return f"Smoke-{stage}"

    def approval_stage(self, stage: str) -> str:
        return f"Approve-{stage}"

    def approval_action(self, stage: str) -> str:
        return f"ApproveDeployTo{stage.capitalize()}"


# ------------------------------------------------------------------------------------------------------------------
# The CDK CLI
# ------------------------------------------------------------------------------------------------------------------
def cdk_cli(region: str, root: Path = ROOT) -> Callable[[list[str]], dict]:
    """``run_cdk`` for real runs: the pinned CLI (node_modules/.bin/cdk) in the repository, output to the terminal;
    returns the ``--outputs-file`` JSON when the arguments name one."""

    def run(args: list[str]) -> dict:
        cli = root / "node_modules" / ".bin" / "cdk"
        if not cli.exists():
            raise E2EError("cdk", f"{cli} is missing; run `make install` (npm ci) first")
        env = {
            **os.environ,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "CDK_DISABLE_VERSION_CHECK": "true",
            "CDK_DISABLE_CLI_TELEMETRY": "true",
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": os.environ.get(
                "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20"),
            "SAGEMAKER_TELEMETRY_OPT_OUT": "true",
        }
        cmd = [str(cli), *args]
        print(f"$ {shlex.join(['cdk', *args])}", file=sys.stderr, flush=True)
        rc = subprocess.run(cmd, cwd=root, env=env, check=False).returncode
        if rc != 0:
            raise E2EError("cdk", f"`cdk {' '.join(args[:2])}` exited with {rc} (its output is above)")
        if "--outputs-file" in args:
            path = Path(args[args.index("--outputs-file") + 1])
            path = path if path.is_absolute() else root / path
            return json.loads(path.read_text()) if path.exists() else {}
        return {}

    return run


# ------------------------------------------------------------------------------------------------------------------
# Options and report
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class Options:
    env: str
    yes: bool = False
    teardown: str = "stacks"
    timeout_minutes: float = 90.0
    report_dir: Path = Path("e2e-report")
    keep_on_failure: bool = False
    allow_prod: bool = False
    model: Optional[str] = None
    region: Optional[str] = None
    rows: int = 5
    data_file: Path = DEFAULT_DATA
    poll_initial_seconds: float = 10.0
    poll_max_seconds: float = 60.0
    heartbeat_seconds: float = 300.0


@dataclass
class StageTiming:
    name: str
    seconds: float
    status: str
    detail: str = ""


@dataclass
class Report:
    run_id: str
    env: str
    model: str
    status: str = "running"
    account: Optional[str] = None
    caller_arn: Optional[str] = None
    region: Optional[str] = None
    failure: Optional[dict[str, str]] = None
    stages: list[StageTiming] = field(default_factory=list)
    raw_object: Optional[str] = None
    data_attribution: str = DATA_ATTRIBUTION
    glue_job_run: Optional[str] = None
    pipeline_execution: Optional[str] = None
    package_arn: Optional[str] = None
    package_version: Optional[int] = None
    metric: Optional[dict[str, Any]] = None
    deploy_execution: Optional[str] = None
    serving_stack: Optional[str] = None
    targets: dict[str, Optional[str]] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    teardown: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc["stages"] = [s.__dict__ for s in self.stages]
        return doc

    def markdown(self) -> str:
        lines = [f"# End-to-end run {self.run_id}: {self.status}", ""]
        lines += [
            f"- environment `{self.env}`, model `{self.model}`, account `{self.account}`, region `{self.region}`",
            f"- caller `{self.caller_arn}`",
        ]
        if self.failure:
            lines.append(f"- **failed at {self.failure['stage']}**: {self.failure['message']}")
        lines += ["", "| stage | status | seconds | detail |", "|---|---|---|---|"]
        lines += [f"| {s.name} | {s.status} | {s.seconds:.1f} | {s.detail} |" for s in self.stages]
        lines += [""]
        facts = [
            ("raw object", self.raw_object), ("Glue job run", self.glue_job_run),
            ("pipeline execution", self.pipeline_execution), ("model package", self.package_arn),
            ("deploy pipeline execution", self.deploy_execution), ("serving stack", self.serving_stack),
        ]
        lines += [f"- {k}: `{v}`" for k, v in facts if v]
        if self.metric:
            m = self.metric
            lines.append(f"- metric {m.get('name')} = {m.get('value')} (threshold {m.get('threshold')}, "
                         f"from {m.get('source')})")
        lines.append(f"- data: {self.data_attribution}")
        if self.predictions:
            kinds = [k for k in ("function_url", "endpoint") if any(k in p for p in self.predictions)]
            lines += ["", "## Predictions (staging)", "", "| row | actual | " + " | ".join(kinds) + " |",
                      "|---|---|" + "---|" * len(kinds)]
            for p in self.predictions:
                cells = [_fmt(p.get(k)) for k in kinds]
                lines.append(f"| {p['row']} | {_fmt(p.get('actual'))} | " + " | ".join(cells) + " |")
        if self.teardown:
            t = self.teardown
            lines += ["", f"## Teardown ({t.get('mode')})", ""]
            for stack in t.get("destroyed_stacks", []):
                lines.append(f"- stack destroyed: `{stack}`")
            for item in t.get("removed", []):
                lines.append(f"- removed {item['type']}: `{item['id']}`" + (f" ({item['note']})" if item.get("note") else ""))
            for item in t.get("left", []):
                lines.append(f"- left: {item}")
            for err in t.get("errors", []):
                lines.append(f"- **error**: {err}")
        return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return "" if value is None else str(value)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


# ------------------------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------------------------
class E2ERun:
    """One end-to-end run. Everything external is injected: ``session_factory()`` returns a boto3 Session (credentials
    and region of the run), ``run_cdk(args)`` runs the CDK CLI and returns the outputs file's JSON, ``clock()`` and
    ``sleep(seconds)`` pace the waits, ``say(line)`` prints progress."""

    def __init__(
        self,
        options: Options,
        config: Any,
        *,
        session_factory: Callable[[], Any],
        run_cdk: Optional[Callable[[list[str]], dict]] = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        say: Optional[Callable[[str], None]] = None,
        run_id: Optional[str] = None,
    ) -> None:
        self.options = options
        self.config = config
        models = {m.name: m for m in config.models}
        if options.model and options.model not in models:
            raise Refused(f"--model {options.model}: not a model of config/{config.environment}.yaml; use one of "
                          f"{sorted(models)}")
        self.model = models[options.model] if options.model else config.models[0]
        self.names = Names.of(config, self.model)
        self.session_factory = session_factory
        self._run_cdk = run_cdk
        self.clock = clock
        self.sleep = sleep
        self._say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.run_id = run_id or dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.report = Report(run_id=self.run_id, env=config.environment, model=self.model.name)
        self.started = clock()
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self.region: Optional[str] = None
        # What the run observed (for waits, teardown and the report)
        self.uploaded_at: Optional[dt.datetime] = None
        self.glue_run: Optional[dict] = None
        self.execution: Optional[dict] = None
        self.deploy_execution_id: Optional[str] = None
        self.deployed = False

    # --- plumbing ---------------------------------------------------------------------------------------------
    def say(self, line: str) -> None:
        self._say(f"[e2e {_minutes(self.clock() - self.started)}] {line}")

    def client(self, service: str) -> Any:
        if service not in self._clients:
            if self._session is None:
                self._session = self.session_factory()
            self._clients[service] = self._session.client(service, region_name=self.region, config=CLIENT_CONFIG)
        return self._clients[service]

    def run_cdk(self, args: list[str]) -> dict:
        if self._run_cdk is None:
            self._run_cdk = cdk_cli(self.region or "")
        return self._run_cdk(args) or {}

    @property
    def timeout_seconds(self) -> float:
        return self.options.timeout_minutes * 60

    def wait_for(self, stage: str, what: str, probe: Callable[[], tuple[bool, str, Any]]) -> Any:
        """Poll ``probe() -> (done, status, value)`` with backoff until done (returns value), the probe raises (a
        terminal failure), or ``--timeout-minutes`` pass (WaitTimeout naming the last status)."""
        start = self.clock()
        delay = self.options.poll_initial_seconds
        last_status, last_said = None, start
        while True:
            done, status, value = probe()
            now = self.clock()
            elapsed = now - start
            if status != last_status or now - last_said >= self.options.heartbeat_seconds:
                self.say(f"{stage}: {what}: {status} (waited {_minutes(elapsed)})")
                last_status, last_said = status, now
            if done:
                return value
            if elapsed >= self.timeout_seconds:
                raise WaitTimeout(
                    stage,
                    f"timed out after {self.options.timeout_minutes:g} minutes waiting for {what} "
                    f"(last status: {status})",
                )
            self.sleep(max(min(delay, self.timeout_seconds - elapsed), 0.001))
            delay = min(delay * 1.5, self.options.poll_max_seconds)

    def _stage(self, name: str, fn: Callable[[], str]) -> None:
        start = self.clock()
        self.say(f"--- {name}")
        try:
            detail = fn() or ""
        except E2EError as exc:
            self.report.stages.append(StageTiming(name, self.clock() - start, "failed", str(exc)))
            raise
        except ClientError as exc:
            err = E2EError(name, f"{exc.operation_name} failed: {error_code(exc)}: {error_message(exc)}")
            self.report.stages.append(StageTiming(name, self.clock() - start, "failed", str(err)))
            raise err from None
        self.report.stages.append(StageTiming(name, self.clock() - start, "ok", detail))

    # --- the whole run ------------------------------------------------------------------------------------------
    def run(self) -> int:
        opts = self.options
        try:
            self._stage("preflight", self.preflight)
        except E2EError as exc:
            return self._finish(exc, teardown=False)
        failure: Optional[E2EError] = None
        try:
            self._stage("deploy", self.deploy)
            self._stage("upload", self.upload)
            self._stage("etl", self.wait_etl)
            self._stage("pipeline", self.wait_pipeline)
            self._stage("approve", self.approve)
            self._stage("metric", self.read_metric)
            if self.names.served:
                self._stage("staging", self.wait_staging)
                self._stage("invoke", self.invoke)
            else:
                self.say(f"model {self.model.name} has neither endpoint nor Lambda: nothing to deploy or invoke")
        except E2EError as exc:
            failure = exc
        except (NoCredentialsError, NoRegionError, BotoCoreError) as exc:
            failure = E2EError("aws", f"AWS SDK error: {exc}")
        except KeyboardInterrupt:
            failure = E2EError("interrupted", "interrupted (Ctrl-C); interrupt again to skip the teardown")
        teardown = opts.teardown != "none" and not (failure and opts.keep_on_failure)
        return self._finish(failure, teardown=teardown)

    def _finish(self, failure: Optional[E2EError], *, teardown: bool) -> int:
        report = self.report
        if failure:
            report.status = "failed"
            report.failure = {"stage": failure.stage, "message": str(failure)}
            self.say(f"E2E FAILED at {failure.stage}: {failure}")
        else:
            report.status = "succeeded"
        code = failure.exit_code if failure else EXIT_OK
        if isinstance(failure, Refused):
            return code  # nothing was created: no report, no teardown
        self.write_report()
        if teardown:
            start = self.clock()
            try:
                self.teardown(self.options.teardown)
                status = "ok" if not report.teardown.get("errors") else "incomplete"
            except E2EError as exc:
                report.teardown.setdefault("errors", []).append(str(exc))
                status = "failed"
            except ClientError as exc:
                report.teardown.setdefault("errors", []).append(
                    f"{exc.operation_name} failed: {error_code(exc)}: {error_message(exc)}")
                status = "failed"
            except BotoCoreError as exc:
                report.teardown.setdefault("errors", []).append(f"AWS SDK error: {exc}")
                status = "failed"
            report.stages.append(StageTiming("teardown", self.clock() - start, status,
                                             f"mode {self.options.teardown}"))
            if report.teardown.get("errors") and code == EXIT_OK:
                code = EXIT_FAILED
                report.status = "succeeded; teardown incomplete"
        else:
            self.report.teardown = {"mode": "none", "left": self.leftovers(failure)}
        self.write_report()
        for err in report.teardown.get("errors", []):
            self.say(f"teardown error: {err}")
        self.say(f"report: {self.options.report_dir / 'e2e-report.md'} ({report.status})")
        return code

    def leftovers(self, failure: Optional[E2EError]) -> list[str]:
        why = "--keep-on-failure" if failure else "--teardown none"
        left = [f"every stack of the app ({why}); remove with: python -m scripts.e2e --env {self.config.environment} "
                "--yes --teardown-only all"]
        if self.deploy_execution_id and len(self.names.stages) > 1:
            left.append(f"deploy pipeline {self.names.deploy_pipeline} execution {self.deploy_execution_id} waits "
                        f"at the manual approval before {self.names.stages[-1]}; reject it to stop there")
        return left

    def write_report(self) -> None:
        out = self.options.report_dir
        out.mkdir(parents=True, exist_ok=True)
        (out / "e2e-report.json").write_text(json.dumps(self.report.as_dict(), indent=2, default=str) + "\n")
        (out / "e2e-report.md").write_text(self.report.markdown())

    # --- 1. preflight -------------------------------------------------------------------------------------------
    def preflight(self) -> str:
        opts, config = self.options, self.config
        if PROD_NAME.search(config.environment) and not opts.allow_prod:
            raise Refused(f"environment '{config.environment}' looks like production; the e2e run deploys, approves "
                          "and destroys: run it on a sandbox environment, or pass --allow-prod if this one is one")
        if config.platform_pipeline.enabled:
            raise Refused(f"config/{config.environment}.yaml enables platform_pipeline: its CDK Pipeline owns the "
                          "environment's stacks; run the e2e on an environment without it")
        if opts.teardown not in TEARDOWN_MODES:
            raise Refused(f"--teardown {opts.teardown}: use one of {', '.join(TEARDOWN_MODES)}")
        if not opts.data_file.is_file():
            raise Refused(f"sample data {opts.data_file} does not exist")
        if not opts.yes:
            raise Refused(
                f"this deploys every stack of config/{config.environment}.yaml into the account of your current "
                f"credentials, runs Glue, SageMaker and the deploy pipeline (billed), approves a model package and "
                f"then tears down ({opts.teardown}); pass --yes to go ahead"
            )
        session = self.session_factory()
        self._session = session
        self.region = opts.region or config.region or session.region_name
        if not self.region:
            raise Refused("no AWS region: set AWS_REGION, pass --region, or set region in the config")
        if config.region and self.region != config.region:
            raise Refused(f"config/{config.environment}.yaml pins region {config.region}, the run would use "
                          f"{self.region}; pass --region {config.region}")
        try:
            ident = self.client("sts").get_caller_identity()
        except NoCredentialsError:
            raise Refused("no AWS credentials: set AWS_PROFILE (or the AWS_* variables) for the sandbox account")
        except ClientError as exc:
            raise Refused(f"the credentials do not work: {error_code(exc)}: {error_message(exc)}") from None
        account, arn = ident["Account"], ident["Arn"]
        self.report.account, self.report.caller_arn, self.report.region = account, arn, self.region
        self.say(f"caller {arn} (account {account}, user id {ident.get('UserId')}), region {self.region}")
        if config.account and config.account != account:
            raise Refused(f"config/{config.environment}.yaml pins account {config.account}, but the credentials are "
                          f"of account {account} ({arn}); use the sandbox account's credentials")
        qualifier = bootstrap_qualifier()
        try:
            self.client("ssm").get_parameter(Name=f"/cdk-bootstrap/{qualifier}/version")
        except ClientError as exc:
            if error_code(exc) == "ParameterNotFound":
                raise Refused(f"account {account} region {self.region} is not CDK-bootstrapped (qualifier "
                              f"{qualifier}); run: npx cdk bootstrap aws://{account}/{self.region}") from None
            raise
        return f"account {account}, region {self.region}"

    # --- 2. deploy and upload -----------------------------------------------------------------------------------
    def deploy(self) -> str:
        outputs_file = self.options.report_dir / "cdk-outputs.json"
        self.options.report_dir.mkdir(parents=True, exist_ok=True)
        self.deployed = True  # from here on, teardown has something to remove
        outputs = self.run_cdk(["deploy", "--all", "-c", f"env={self.config.environment}", "--require-approval",
                                "never", "--outputs-file", str(outputs_file.resolve())])
        return f"{len(outputs)} stacks with outputs"

    def export_value(self, name: str) -> str:
        for page in self.client("cloudformation").get_paginator("list_exports").paginate():
            for export in page.get("Exports", []):
                if export["Name"] == name:
                    return export["Value"]
        raise E2EError("upload", f"export {name} does not exist: did `cdk deploy --all` deploy {self.names.prefix}-data?")

    def upload(self) -> str:
        bucket = self.export_value(self.names.raw_export())
        key = f"{self.names.dataset}/e2e-{self.run_id}.csv"
        s3 = self.client("s3")
        s3.put_object(
            Bucket=bucket, Key=key, Body=self.options.data_file.read_bytes(), ContentType="text/csv",
            Metadata={"source": "data/abalone.csv", "license": "CC-BY-4.0", "e2e-run": self.run_id},
        )
        head = s3.head_object(Bucket=bucket, Key=key)
        # The service's clock, not ours: later runs must have started at or after it (S3 keeps whole seconds).
        self.uploaded_at = head["LastModified"]
        self.report.raw_object = f"s3://{bucket}/{key}"
        if not self.config.data_lake.etl_on_raw_upload:
            run_id = self.client("glue").start_job_run(JobName=self.names.etl_job)["JobRunId"]
            self.say(f"data_lake.etl_on_raw_upload is off: started Glue job run {run_id} directly")
        return f"s3://{bucket}/{key} ({head.get('ContentLength')} bytes)"

    # --- 3. waits -------------------------------------------------------------------------------------------------
    def wait_etl(self) -> str:
        glue, job = self.client("glue"), self.names.etl_job
        assert self.uploaded_at is not None

        def probe() -> tuple[bool, str, Any]:
            runs = glue.get_job_runs(JobName=job, MaxResults=50).get("JobRuns", [])
            mine = [r for r in runs if r.get("StartedOn") and r["StartedOn"] >= self.uploaded_at]
            if not mine:
                return False, "no run started since the upload yet", None
            run = min(mine, key=lambda r: r["StartedOn"])
            self.glue_run = run
            self.report.glue_job_run = run["Id"]
            state = run.get("JobRunState", "?")
            if state in GLUE_FAILED:
                raise E2EError("etl", f"Glue job run {run['Id']} of {job} is {state}: "
                                      f"{run.get('ErrorMessage') or 'no error message'}")
            return state == "SUCCEEDED", f"run {run['Id']} {state}", run

        run = self.wait_for("etl", f"Glue job {job}", probe)
        return f"run {run['Id']} SUCCEEDED in {run.get('ExecutionTime', '?')} s"

    def wait_pipeline(self) -> str:
        sm, name = self.client("sagemaker"), self.names.pipeline
        assert self.glue_run is not None
        # The Glue rule starts it when the run has SUCCEEDED; a minute of slack for the two services' clocks.
        since = (self.glue_run.get("CompletedOn") or self.glue_run["StartedOn"]) - dt.timedelta(seconds=60)

        def probe() -> tuple[bool, str, Any]:
            summaries = sm.list_pipeline_executions(
                PipelineName=name, SortBy="CreationTime", SortOrder="Descending", MaxResults=50
            ).get("PipelineExecutionSummaries", [])
            mine = [s for s in summaries if s.get("StartTime") and s["StartTime"] >= since]
            if not mine:
                return False, "no execution started since the ETL run yet", None
            summary = min(mine, key=lambda s: s["StartTime"])
            arn = summary["PipelineExecutionArn"]
            self.execution = summary
            self.report.pipeline_execution = arn
            status = summary.get("PipelineExecutionStatus", "?")
            if status in PIPELINE_FAILED:
                raise E2EError("pipeline", self._pipeline_failure(arn, status))
            return status == "Succeeded", f"execution {arn.rsplit('/', 1)[-1]} {status}", summary

        summary = self.wait_for("pipeline", f"SageMaker pipeline {name}", probe)
        return f"execution {summary['PipelineExecutionArn']} Succeeded"

    def _steps(self, execution_arn: str) -> list[dict]:
        steps: list[dict] = []
        kwargs: dict[str, Any] = {"PipelineExecutionArn": execution_arn}
        while True:
            page = self.client("sagemaker").list_pipeline_execution_steps(**kwargs)
            steps += page.get("PipelineExecutionSteps", [])
            if not page.get("NextToken"):
                return steps
            kwargs["NextToken"] = page["NextToken"]

    def _pipeline_failure(self, arn: str, status: str) -> str:
        reason = self.client("sagemaker").describe_pipeline_execution(PipelineExecutionArn=arn).get("FailureReason")
        try:
            failed = [s for s in self._steps(arn) if s.get("StepStatus") == "Failed"]
        except ClientError:
            failed = []
        where = "; ".join(f"step {s.get('StepName')}: {s.get('FailureReason') or 'no reason given'}" for s in failed)
        return (f"pipeline execution {arn} is {status}: {reason or 'no failure reason given'}"
                + (f" (failed {where})" if where else ""))

    def _registered_package(self) -> Optional[str]:
        """The package the execution registered: its RegisterModel step's metadata, else the newest package of the
        group created after the execution started."""
        assert self.execution is not None
        arn = self.execution["PipelineExecutionArn"]
        try:
            for step in self._steps(arn):
                registered = ((step.get("Metadata") or {}).get("RegisterModel") or {}).get("Arn")
                if registered and step.get("StepStatus") == "Succeeded":
                    return registered
        except ClientError:
            pass
        packages = self.client("sagemaker").list_model_packages(
            ModelPackageGroupName=self.names.pipeline, CreationTimeAfter=self.execution["StartTime"],
            SortBy="CreationTime", SortOrder="Descending",
        ).get("ModelPackageSummaryList", [])
        return packages[0]["ModelPackageArn"] if packages else None

    def approve(self) -> str:
        sm = self.client("sagemaker")

        def probe() -> tuple[bool, str, Any]:
            arn = self._registered_package()
            if not arn:
                return False, f"no package registered in {self.names.pipeline} yet", None
            return True, f"package {arn}", arn

        arn = self.wait_for("approve", "the registered model package", probe)
        desc = sm.describe_model_package(ModelPackageName=arn)
        self.report.package_arn = arn
        self.report.package_version = desc.get("ModelPackageVersion")
        status = desc.get("ModelApprovalStatus")
        if status == "Rejected":
            raise E2EError("approve", f"model package {arn} is Rejected; the e2e run approves only a pending package")
        if status == "Approved":
            # Approved before this run looked: the approval's execution is one that started after the package.
            created = desc.get("CreationTime")
            self._deploy_executions_before = {
                s["pipelineExecutionId"] for s in self._deploy_executions_or_none()
                if created and s.get("startTime") and s["startTime"] < created}
        else:
            self._deploy_executions_before = {s["pipelineExecutionId"] for s in self._deploy_executions_or_none()}
            sm.update_model_package(
                ModelPackageArn=arn, ModelApprovalStatus="Approved",
                ApprovalDescription=f"approved by scripts/e2e run {self.run_id}",
            )
            self.say(f"approved {arn} (was {status})")
        return f"{arn} Approved (was {status})"

    def _deploy_executions_or_none(self) -> list[dict]:
        try:
            return self._deploy_executions()
        except ClientError as exc:
            if error_code(exc) == "PipelineNotFoundException":
                return []
            raise

    def _deploy_executions(self) -> list[dict]:
        return self.client("codepipeline").list_pipeline_executions(
            pipelineName=self.names.deploy_pipeline, maxResults=50
        ).get("pipelineExecutionSummaries", [])

    def wait_staging(self) -> str:
        cp, pipe = self.client("codepipeline"), self.names.deploy_pipeline
        first, last = self.names.stages[0], self.names.stages[-1]
        before = getattr(self, "_deploy_executions_before", set())

        def failed_action(stages: dict, exec_id: str) -> str:
            for stage in stages.values():
                if (stage.get("latestExecution") or {}).get("pipelineExecutionId") != exec_id:
                    continue
                for action in stage.get("actionStates", []):
                    latest = action.get("latestExecution") or {}
                    if latest.get("status") == "Failed":
                        detail = (latest.get("errorDetails") or {}).get("message") or latest.get("summary") or ""
                        return f"; failed action {stage['stageName']}/{action['actionName']}: {detail}"
            return ""

        def probe() -> tuple[bool, str, Any]:
            new = [s for s in self._deploy_executions() if s["pipelineExecutionId"] not in before]
            if not new:
                return False, "no execution started since the approval yet", None
            summary = max(new, key=lambda s: s.get("startTime") or dt.datetime.min.replace(tzinfo=dt.timezone.utc))
            exec_id, status = summary["pipelineExecutionId"], summary.get("status", "?")
            self.deploy_execution_id = exec_id
            self.report.deploy_execution = exec_id
            stages = {s["stageName"]: s for s in cp.get_pipeline_state(name=pipe).get("stageStates", [])}

            def stage_status(name: str) -> Optional[str]:
                latest = (stages.get(name) or {}).get("latestExecution") or {}
                return latest.get("status") if latest.get("pipelineExecutionId") == exec_id else None

            if status in DEPLOY_FAILED:
                raise E2EError("staging", f"deploy pipeline {pipe} execution {exec_id} is {status}"
                                          + failed_action(stages, exec_id))
            if stage_status(self.names.smoke_stage(first)) == "Succeeded":
                return True, f"execution {exec_id}: {self.names.smoke_stage(first)} Succeeded", exec_id
            if len(self.names.stages) > 1 and stage_status(self.names.approval_stage(last)) == "InProgress":
                actions = stages[self.names.approval_stage(last)].get("actionStates", [])
                if any(a.get("actionName") == self.names.approval_action(last)
                       and (a.get("latestExecution") or {}).get("status") == "InProgress" for a in actions):
                    return True, f"execution {exec_id}: waiting for the approval before {last}", exec_id
            if status == "Succeeded":
                raise E2EError("staging", f"deploy pipeline {pipe} execution {exec_id} Succeeded without "
                                          f"{self.names.smoke_stage(first)} (did Resolve find no approved package?)")
            current = [n for n in stages if stage_status(n) == "InProgress"]
            return False, f"execution {exec_id} {status}" + (f" at {', '.join(current)}" if current else ""), exec_id

        exec_id = self.wait_for("staging", f"deploy pipeline {pipe} to have {first} ready", probe)
        return f"execution {exec_id}: {first} deployed and smoke-tested"

    # --- 4. invoke ----------------------------------------------------------------------------------------------
    def _model_metadata(self) -> dict:
        desc = self.client("sagemaker").describe_model_package(ModelPackageName=self.report.package_arn)
        containers = (desc.get("InferenceSpecification") or {}).get("Containers") or []
        url = containers[0].get("ModelDataUrl") if containers else None
        if not url:
            raise E2EError("invoke", f"model package {self.report.package_arn} has no ModelDataUrl")
        bucket, key = _split_s3(url)
        body = self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile() and Path(member.name).name == "model_metadata.json":
                    meta = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
                    try:
                        return smoke_test._validate_metadata(meta)
                    except smoke_test.ScriptError as exc:
                        raise E2EError("invoke", f"{url}: model_metadata.json: {exc}") from None
        raise E2EError("invoke", f"{url} holds no model_metadata.json (docs/CONTRACTS.md)")

    def sample_rows(self, meta: dict) -> tuple[list[dict], list[Any]]:
        """The first ``--rows`` rows of the sample data as instances (feature name -> value, by the metadata) and
        their actual target values."""
        with self.options.data_file.open(newline="") as f:
            reader = csv.DictReader(f)
            columns = {_snake(c): c for c in (reader.fieldnames or [])}
            rows = [row for _, row in zip(range(self.options.rows), reader)]
        missing = [f["name"] for f in meta["features"] if f["name"] not in columns]
        if missing:
            raise E2EError("invoke", f"{self.options.data_file} has no column for features {missing}")
        instances, actual = [], []
        target = meta.get("target")
        for row in rows:
            inst = {}
            for feat in meta["features"]:
                value = row[columns[feat["name"]]]
                inst[feat["name"]] = value if feat["type"] == "categorical" else float(value)
            instances.append(inst)
            raw = row.get(columns.get(target or "", ""), None)
            actual.append(float(raw) if raw not in (None, "") and _is_number(raw) else raw)
        return instances, actual

    def invoke(self) -> str:
        stage = self.names.stages[0]
        stack = self.names.serving_stack(self.model.name, stage)
        self.report.serving_stack = stack
        outputs = {o["OutputKey"]: o["OutputValue"] for o in
                   self.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])}
        endpoint, url = outputs.get("EndpointName"), outputs.get("FunctionUrl")
        self.report.targets = {"endpoint_name": endpoint, "function_url": url}
        if not endpoint and not url:
            raise E2EError("invoke", f"stack {stack} has neither an EndpointName nor a FunctionUrl output")
        meta = self._model_metadata()
        instances, actual = self.sample_rows(meta)
        self.report.predictions = [{"row": i + 1, "actual": a, "instance": inst}
                                   for i, (inst, a) in enumerate(zip(instances, actual))]
        done = []
        try:
            if url:
                creds = self._session.get_credentials()
                if creds is None:
                    raise E2EError("invoke", "no AWS credentials to sign the Function URL request with")
                preds = smoke_test.check_function_url(
                    url, instances, credentials=creds.get_frozen_credentials(),
                    region=smoke_test.function_url_region(url, self.region), timeout=30.0)
                for p, pred in zip(self.report.predictions, preds):
                    p["function_url"] = pred
                done.append(f"function URL: {len(preds)} predictions")
            if endpoint:
                remaining = max(self.timeout_seconds / 60, 1.0)
                preds = smoke_test.check_endpoint(
                    self.client("sagemaker"), self.client("sagemaker-runtime"), endpoint, instances, meta,
                    "encoded", remaining, 30.0)
                for p, pred in zip(self.report.predictions, preds):
                    p["endpoint"] = pred[0] if isinstance(pred, list) and len(pred) == 1 else pred  # one CSV cell
                done.append(f"endpoint {endpoint}: {len(preds)} predictions")
        except smoke_test.ScriptError as exc:
            raise E2EError("invoke", str(exc)) from None
        for p in self.report.predictions:
            self.say(f"row {p['row']}: actual {_fmt(p['actual'])}, "
                     + ", ".join(f"{k} {_fmt(p[k])}" for k in ("function_url", "endpoint") if k in p))
        return "; ".join(done)

    # --- 5. metric ----------------------------------------------------------------------------------------------
    def read_metric(self) -> str:
        arn = self.report.package_arn
        desc = self.client("sagemaker").describe_model_package(ModelPackageName=arn)
        stats = (((desc.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}).get("S3Uri")
        metric = self.model.metric
        self.report.metric = {"name": metric, "threshold": self.model.threshold, "source": stats, "value": None}
        if not stats:
            return f"package {arn} has no ModelMetrics.ModelQuality.Statistics"
        bucket, key = _split_s3(stats)
        doc = json.loads(self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
        for section, values in doc.items():
            if section.endswith("_metrics") and isinstance(values, dict) and metric in values:
                value = values[metric].get("value") if isinstance(values[metric], dict) else values[metric]
                self.report.metric["value"] = value
                return f"{metric} = {value} (threshold {self.model.threshold})"
        return f"{stats} has no {metric}"

    # --- 6. teardown --------------------------------------------------------------------------------------------
    def existing_stacks(self) -> dict[str, str]:
        """Stack name -> stack id of the app's stacks that exist (serving stacks first, then the core in reverse)."""
        cfn = self.client("cloudformation")
        found: dict[str, str] = {}
        for name in self.names.serving_stacks() + list(reversed(self.names.core_stacks())):
            try:
                stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
            except ClientError as exc:
                if error_code(exc) == "ValidationError" and "does not exist" in error_message(exc):
                    continue
                raise
            if stack.get("StackStatus") != "DELETE_COMPLETE":
                found[name] = stack["StackId"]
        return found

    def stack_resources(self, stacks: dict[str, str]) -> list[dict]:
        """Every bucket, KMS key, log group and model package group the stacks declare (ListStackResources: complete,
        where DescribeStackResources stops at 100 resources)."""
        wanted = {"AWS::S3::Bucket", "AWS::KMS::Key", "AWS::Logs::LogGroup", "AWS::SageMaker::ModelPackageGroup"}
        out = []
        paginator = self.client("cloudformation").get_paginator("list_stack_resources")
        for name, stack_id in stacks.items():
            for page in paginator.paginate(StackName=stack_id):
                for r in page.get("StackResourceSummaries", []):
                    if r["ResourceType"] not in wanted or r.get("ResourceStatus") == "DELETE_COMPLETE":
                        continue
                    physical = r.get("PhysicalResourceId") or ""
                    if r["ResourceType"] == "AWS::SageMaker::ModelPackageGroup":
                        physical = physical.rsplit("/", 1)[-1] if physical else (self.names.group_of_stack(name) or "")
                    if physical:
                        out.append({"stack": name, "type": r["ResourceType"], "id": physical,
                                    "logical_id": r["LogicalResourceId"]})
        return out

    def stop_activity(self) -> None:
        """Stop what the run started and is still running, so the stacks can go."""
        if self.glue_run and self.glue_run.get("JobRunState") not in GLUE_FAILED | {"SUCCEEDED"}:
            self._try("stop Glue run", lambda: self.client("glue").batch_stop_job_run(
                JobName=self.names.etl_job, JobRunIds=[self.glue_run["Id"]]))
        if self.execution and self.execution.get("PipelineExecutionStatus") == "Executing":
            self._try("stop pipeline execution", lambda: self.client("sagemaker").stop_pipeline_execution(
                PipelineExecutionArn=self.execution["PipelineExecutionArn"], ClientRequestToken=uuid.uuid4().hex))
        if self.deploy_execution_id:
            current = {s["pipelineExecutionId"]: s.get("status") for s in self._try("list deploy executions",
                                                                                    self._deploy_executions) or []}
            if current.get(self.deploy_execution_id) == "InProgress":
                self._try("stop deploy pipeline", lambda: self.client("codepipeline").stop_pipeline_execution(
                    pipelineName=self.names.deploy_pipeline, pipelineExecutionId=self.deploy_execution_id,
                    abandon=True, reason=f"scripts/e2e run {self.run_id} tears down"))

    def _try(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ClientError as exc:
            self.report.teardown.setdefault("errors", []).append(
                f"{what}: {exc.operation_name}: {error_code(exc)}: {error_message(exc)}")
            return None

    def teardown(self, mode: str) -> None:
        self.say(f"--- teardown ({mode})")
        t = self.report.teardown = {"mode": mode, "destroyed_stacks": [], "removed": [], "left": [], "errors": []}
        if mode == "none":
            return
        stacks = self.existing_stacks()
        resources = self.stack_resources(stacks) if mode == "all" else []
        self.stop_activity()
        env = self.config.environment
        serving = [s for s in stacks if s in self.names.serving_stacks()]
        if serving:
            self.wait_settled(serving)
            self.run_cdk(["destroy", "--exclusively", "--force", "-c", f"env={env}", "-c", "serving=all", *serving])
        self.run_cdk(["destroy", "--all", "--force", "-c", f"env={env}"])
        remaining = self.existing_stacks()
        t["destroyed_stacks"] = [s for s in stacks if s not in remaining]
        for s in remaining:
            t["errors"].append(f"stack {s} still exists after cdk destroy")
        if mode == "all":
            self.remove_retained(resources)
        else:
            t["left"].append("retained resources (lake and access-log buckets, KMS keys, log groups, model package "
                             "groups): --teardown all removes them")

    def wait_settled(self, stacks: list[str]) -> None:
        cfn = self.client("cloudformation")

        def probe() -> tuple[bool, str, Any]:
            busy = []
            for name in stacks:
                status = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
                if status.endswith("_IN_PROGRESS"):
                    busy.append(f"{name} {status}")
            return not busy, ", ".join(busy) or "settled", None

        self.wait_for("teardown", "serving stacks to finish their updates", probe)

    def remove_retained(self, resources: list[dict]) -> None:
        t = self.report.teardown
        by_type: dict[str, list[dict]] = {}
        for r in resources:
            by_type.setdefault(r["type"], []).append(r)
        # Buckets: those others log into last (access logs keep arriving while the others are emptied).
        buckets = [r["id"] for r in by_type.get("AWS::S3::Bucket", [])]
        log_targets = set()
        for b in buckets:
            try:
                target = self.client("s3").get_bucket_logging(Bucket=b).get("LoggingEnabled", {}).get("TargetBucket")
            except ClientError:
                continue
            if target:
                log_targets.add(target)
        for b in sorted(buckets, key=lambda name: name in log_targets):
            self._remove("bucket", b, lambda b=b: self.delete_bucket(b))
        for r in by_type.get("AWS::Logs::LogGroup", []):
            self._remove("log group", r["id"], lambda r=r: self.delete_log_group(r["id"]),
                         missing=_gone("ResourceNotFoundException"))
        for r in by_type.get("AWS::SageMaker::ModelPackageGroup", []):
            self._remove("model package group", r["id"], lambda r=r: self.delete_package_group(r["id"]),
                         missing=_gone("ResourceNotFound", "ValidationException", message="does not exist"))
        for r in by_type.get("AWS::KMS::Key", []):
            self._remove("KMS key", r["id"], lambda r=r: self.schedule_key_deletion(r["id"]),
                         missing=_gone("NotFoundException"))
        t["left"].append("log groups that services create on their own (e.g. /aws/sagemaker/Endpoints/..., "
                         "/aws-glue/...) are not stack resources and are left")

    def _remove(self, kind: str, ident: str, fn: Callable[[], Optional[str]],
                missing: Callable[[ClientError], bool] = lambda exc: False) -> None:
        t = self.report.teardown
        try:
            note = fn()
        except ClientError as exc:
            if missing(exc):
                self.say(f"{kind} {ident}: already gone")
                return
            t["errors"].append(f"{kind} {ident}: {exc.operation_name}: {error_code(exc)}: {error_message(exc)}")
            return
        if note == "gone":
            self.say(f"{kind} {ident}: already gone")
            return
        t["removed"].append({"type": kind, "id": ident, **({"note": note} if note else {})})
        self.say(f"removed {kind} {ident}" + (f" ({note})" if note else ""))

    def delete_log_group(self, name: str) -> Optional[str]:
        self.client("logs").delete_log_group(logGroupName=name)
        return None

    def delete_bucket(self, bucket: str, attempts: int = 3) -> Optional[str]:
        s3 = self.client("s3")
        deleted = 0
        for attempt in range(attempts):
            try:
                deleted += self.empty_bucket(bucket)
                s3.delete_bucket(Bucket=bucket)
                return f"{deleted} object versions and delete markers"
            except ClientError as exc:
                code = error_code(exc)
                if code == "NoSuchBucket":
                    return "gone"
                if code != "BucketNotEmpty" or attempt == attempts - 1:
                    raise
                self.sleep(self.options.poll_initial_seconds)  # late access-log deliveries
        return None

    def empty_bucket(self, bucket: str) -> int:
        """Delete every object version and delete marker, 1,000 per DeleteObjects request; raises on any error."""
        s3 = self.client("s3")
        count = 0
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            items = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                     for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            for i in range(0, len(items), 1000):
                batch = items[i:i + 1000]
                resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
                errors = resp.get("Errors", [])
                if errors:
                    e = errors[0]
                    raise E2EError("teardown", f"bucket {bucket}: could not delete {len(errors)} objects, e.g. "
                                               f"{e.get('Key')} {e.get('VersionId')}: {e.get('Code')}: {e.get('Message')}")
                count += len(batch)
        return count

    def delete_package_group(self, group: str) -> Optional[str]:
        sm = self.client("sagemaker")
        arns = []
        kwargs: dict[str, Any] = {"ModelPackageGroupName": group}
        while True:
            page = sm.list_model_packages(**kwargs)
            arns += [p["ModelPackageArn"] for p in page.get("ModelPackageSummaryList", [])]
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        for arn in arns:
            sm.delete_model_package(ModelPackageName=arn)
            self.report.teardown["removed"].append({"type": "model package", "id": arn})
        sm.delete_model_package_group(ModelPackageGroupName=group)
        return f"{len(arns)} packages"

    def schedule_key_deletion(self, key_id: str) -> Optional[str]:
        kms = self.client("kms")
        state = kms.describe_key(KeyId=key_id)["KeyMetadata"].get("KeyState")
        if state == "PendingDeletion":
            return "gone"
        resp = kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=KMS_MIN_PENDING_DAYS)
        return f"deletion on {resp.get('DeletionDate')}"

    # --- teardown alone -----------------------------------------------------------------------------------------
    def teardown_only(self, mode: str) -> int:
        try:
            self._stage("preflight", self.preflight)
        except E2EError as exc:
            return self._finish(exc, teardown=False)
        self.options.teardown = mode
        self.report.status = "teardown only"
        start = self.clock()
        try:
            self.teardown(mode)
        except E2EError as exc:
            self.report.teardown.setdefault("errors", []).append(str(exc))
        except ClientError as exc:
            self.report.teardown.setdefault("errors", []).append(
                f"{exc.operation_name} failed: {error_code(exc)}: {error_message(exc)}")
        self.report.stages.append(StageTiming("teardown", self.clock() - start,
                                              "ok" if not self.report.teardown.get("errors") else "incomplete"))
        self.write_report()
        for err in self.report.teardown.get("errors", []):
            self.say(f"teardown error: {err}")
        return EXIT_FAILED if self.report.teardown.get("errors") else EXIT_OK


# ------------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------------
def _gone(*codes: str, message: str = "") -> Callable[[ClientError], bool]:
    """A predicate: the error says the resource no longer exists (``codes``; with ``message``, for the last code only
    when the message says so, as SageMaker answers ValidationException for a missing group)."""

    def check(exc: ClientError) -> bool:
        code = error_code(exc)
        if code not in codes:
            return False
        return not message or code != codes[-1] or message in error_message(exc)

    return check


def _split_s3(uri: str) -> tuple[str, str]:
    m = re.match(r"^s3://([^/]+)/(.+)$", uri or "")
    if not m:
        raise E2EError("invoke", f"{uri!r} is not an s3://bucket/key URI")
    return m.group(1), m.group(2)


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def bootstrap_qualifier(root: Path = ROOT) -> str:
    """The CDK bootstrap qualifier of the app (cdk.json), default ``hnb659fds``."""
    try:
        context = json.loads((root / "cdk.json").read_text()).get("context", {})
    except (OSError, json.JSONDecodeError):
        context = {}
    return context.get("@aws-cdk/core:bootstrapQualifier") or "hnb659fds"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.e2e", description=__doc__.split("\n\n")[0])
    p.add_argument("--env", required=True, help="config/<env>.yaml to deploy (a sandbox environment)")
    p.add_argument("--yes", action="store_true", help="go ahead: deploy, run (billed), approve, tear down")
    p.add_argument("--teardown", choices=TEARDOWN_MODES, default="stacks",
                   help="after the run: none, stacks (cdk destroy; default) or all (also the retained resources)")
    p.add_argument("--teardown-only", choices=("stacks", "all"),
                   help="only tear down an earlier run's environment (no deploy)")
    p.add_argument("--timeout-minutes", type=float, default=90.0, help="bound of each wait (default 90)")
    p.add_argument("--report-dir", type=Path, default=Path("e2e-report"))
    p.add_argument("--keep-on-failure", action="store_true", help="no teardown when a stage fails")
    p.add_argument("--allow-prod", action="store_true", help="run on an environment named like production")
    p.add_argument("--model", help="the model to follow (default: the config's first)")
    p.add_argument("--region", help="default: the config's region, else the credentials' region")
    p.add_argument("--rows", type=int, default=5, help="sample rows sent to staging (default 5)")
    p.add_argument("--data-file", type=Path, default=DEFAULT_DATA)
    return p


def main(argv: Optional[Sequence[str]] = None, **overrides: Any) -> int:
    """CLI entry point; ``overrides`` (session_factory, run_cdk, clock, sleep, say, config) are for tests."""
    args = _parser().parse_args(argv)
    if args.rows < 1 or args.timeout_minutes <= 0:
        print("ERROR: --rows and --timeout-minutes must be positive", file=sys.stderr)
        return EXIT_USAGE
    config = overrides.pop("config", None)
    if config is None:
        from platform_config import ConfigError, load_config

        try:
            config = load_config(args.env)
        except ConfigError as exc:
            print(f"Configuration error:\n{exc}", file=sys.stderr)
            return EXIT_USAGE
    options = Options(
        env=args.env, yes=args.yes, teardown=args.teardown, timeout_minutes=args.timeout_minutes,
        report_dir=args.report_dir, keep_on_failure=args.keep_on_failure, allow_prod=args.allow_prod,
        model=args.model, region=args.region, rows=args.rows, data_file=args.data_file,
    )
    overrides.setdefault("session_factory", lambda: boto3.session.Session(region_name=args.region))
    try:
        run = E2ERun(options, config, **overrides)
    except E2EError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.teardown_only:
        return run.teardown_only(args.teardown_only)
    return run.run()


if __name__ == "__main__":
    raise SystemExit(main())
