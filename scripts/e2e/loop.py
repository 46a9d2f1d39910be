"""The loop's stages of an e2e run: deploy, upload, the waits (ETL, pipeline, staging), approve, invoke, metric."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import tarfile
from pathlib import Path
from typing import Any, Optional

from botocore.exceptions import ClientError

from cicd_scripts import smoke_test
from cicd_scripts._common import error_code
from scripts.e2e.common import DEPLOY_FAILED, GLUE_FAILED, PIPELINE_FAILED, E2EError, number_or_text, snake, split_s3
from scripts.e2e.report import fmt


class LoopStages:
    """The stages of :class:`scripts.e2e.run.E2ERun` from deploy to invoke (a mixin: the run holds the state)."""

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
        if not self.config.dataset(self.names.dataset).triggers.raw_upload:
            run_id = self.client("glue").start_job_run(JobName=self.names.etl_job)["JobRunId"]
            self.say(f"datasets[{self.names.dataset}].triggers.raw_upload is off: started Glue job run {run_id} "
                     "directly")
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
        bucket, key = split_s3(url)
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
            columns = {snake(c): c for c in (reader.fieldnames or [])}
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
            actual.append(number_or_text(raw))
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
            self.say(f"row {p['row']}: actual {fmt(p['actual'])}, "
                     + ", ".join(f"{k} {fmt(p[k])}" for k in ("function_url", "endpoint") if k in p))
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
        bucket, key = split_s3(stats)
        doc = json.loads(self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
        for section, values in doc.items():
            if section.endswith("_metrics") and isinstance(values, dict) and metric in values:
                value = values[metric].get("value") if isinstance(values[metric], dict) else values[metric]
                self.report.metric["value"] = value
                return f"{metric} = {value} (threshold {self.model.threshold})"
        return f"{stats} has no {metric}"
