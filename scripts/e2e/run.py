"""One e2e run: its plumbing (clients, CDK, waits, stages), the preflight, the whole run and its finish."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
import uuid
from typing import Any, Callable, Optional

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from cicd_scripts._common import CLIENT_CONFIG, EXIT_FAILED, EXIT_OK, error_code, error_message
from scripts.e2e.common import PROD_NAME, TEARDOWN_MODES, E2EError, Names, Refused, WaitTimeout, bootstrap_qualifier, cdk_cli
from scripts.e2e.loop import LoopStages
from scripts.e2e.report import Options, Report, StageTiming, minutes
from scripts.e2e.teardown import Teardown


class E2ERun(LoopStages, Teardown):
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
        self._say(f"[e2e {minutes(self.clock() - self.started)}] {line}")

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
                self.say(f"{stage}: {what}: {status} (waited {minutes(elapsed)})")
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
            self._timed_teardown(self.options.teardown)
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

    # --- teardown alone -----------------------------------------------------------------------------------------
    def teardown_only(self, mode: str) -> int:
        try:
            self._stage("preflight", self.preflight)
        except E2EError as exc:
            return self._finish(exc, teardown=False)
        self.options.teardown = mode
        self.report.status = "teardown only"
        self._timed_teardown(mode)
        self.write_report()
        for err in self.report.teardown.get("errors", []):
            self.say(f"teardown error: {err}")
        return EXIT_FAILED if self.report.teardown.get("errors") else EXIT_OK

    def _timed_teardown(self, mode: str) -> None:
        """Tear down; an error that stops it is recorded in the report (never raised), as is the teardown's stage."""
        start, error = self.clock(), None
        try:
            self.teardown(mode)
        except E2EError as exc:
            error = str(exc)
        except ClientError as exc:
            error = f"{exc.operation_name} failed: {error_code(exc)}: {error_message(exc)}"
        except BotoCoreError as exc:
            error = f"AWS SDK error: {exc}"
        if error:
            self.report.teardown.setdefault("errors", []).append(error)
        status = "failed" if error else "incomplete" if self.report.teardown.get("errors") else "ok"
        self.report.stages.append(StageTiming("teardown", self.clock() - start, status, f"mode {mode}"))
