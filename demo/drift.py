"""After stage 6, for a model served from an endpoint that captures data: drift-triggered retraining, as it runs in
AWS (issue 14), on the moto stand-in, with the platform's own code at every step that has code:

1. baseline: the build's ``baseline/baseline.csv`` (the training rows as the endpoint receives them) through
   :func:`sagemaker_steps.drift_check.baseline`, standing in for the QualityCheck step's Model Monitor analyzer:
   ``statistics.json`` (with each feature's KLL sketch) and ``constraints.json`` to the artifacts bucket;
2. traffic: the test split's rows as text/csv requests, written as data-capture records where the endpoint's capture
   goes (``data-capture/<model>/<last stage>/<endpoint>/AllTraffic/yyyy/mm/dd/hh/``) with the package's own
   ``serve.py`` answers: one hour as trained on, one hour with two numerical features multiplied by
   :data:`SHIFT` (e.g. abalone measured in other units);
3. monitor: each hour's capture read back and checked (:func:`sagemaker_steps.drift_check.check`,
   ``baseline_drift_check``); with violations, ``constraint_violations.json`` is written under the monitor's
   report prefix (``models/<model>/monitoring/data-quality/<stage>/``), as the execution's output;
4. the drift function itself (``lambda_src/drift_retrain/drift_handler.handler``, with the environment
   :class:`mlops_constructs.drift_retraining.DriftRetraining` gives it) on the execution's EventBridge event: it reads
   the violations, checks the cooldown with ``ListPipelineExecutions`` and starts the model's pipeline (registered in
   the stand-in by name, its steps run here by the local runner), and publishes to the alarm topic (read back from a
   queue subscribed to it);
5. the started retrain: the pipeline's steps again (``run_local_pipeline``) and a new package version, pending
   approval like any build;
6. the retrained model drifts too (the same traffic against its own baseline): the next monitoring execution's
   event reaches the function while the cooldown holds: no second retrain, no loop.

What a Lambda, EventBridge and Model Monitor do around this code is not emulated (no schedule: the demo runs each
monitoring execution at once; the analyzer's other checks; retries). Everything lands in ``result.drift``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import hashlib
import importlib.util
import io
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

from demo.aws import make_client, patched_environ
from sagemaker_steps import drift_check

REPO = Path(__file__).resolve().parent.parent
DRIFT_CODE = REPO / "lambda_src" / "drift_retrain"
SHIFT = 1.8  # the drifted hour's factor on the shifted features
SHIFTED_FEATURES = 2  # the first numerical features of the model
ROWS_PER_REQUEST = 10
VARIANT = "AllTraffic"
MONITOR_ROLE = "arn:aws:iam::123456789012:role/demo-data-quality-monitor"


def drift_retrain(run: Any) -> None:
    """The drift-to-retrain path for one served model (a :class:`demo.stages.Run`); a line saying why not for a
    model without an endpoint that captures data, or with ``retraining.on_drift: false``."""
    model, config = run.model, run.config
    stage = model.stages[-1]  # the serving stack wires drift retraining on the last stage only
    endpoint = model.endpoint_for(stage.name)
    captures = endpoint.enabled and endpoint.serverless is None and endpoint.data_capture_percent > 0
    if not captures or not model.retrain_on_drift:
        why = ("no endpoint with data capture (Model Monitor reads captured requests)" if not captures
               else "retraining.on_drift: false")
        run.say(f"drift retraining: not for this model ({why})")
        run.result.drift = {"enabled": False, "reason": why}
        return
    run.say(f"drift-triggered retraining (Model Monitor on {config.names.serving_resource(model.name, stage.name)}, "
            f"cooldown {model.retraining.cooldown_hours:g} h):")
    started = time.perf_counter()
    drift = run.result.drift = {"enabled": True, "stage": stage.name}
    path = _DriftPath(run, stage.name, drift)
    try:
        path.execute()
    finally:
        drift["seconds"] = round(time.perf_counter() - started, 2)


@dataclasses.dataclass
class _DriftPath:
    run: Any
    stage: str
    drift: dict

    def __post_init__(self) -> None:
        run, names = self.run, self.run.config.names
        self.model = run.model.name
        self.artifacts = run.result.buckets["artifacts"]
        self.endpoint = names.serving_resource(self.model, self.stage)
        self.schedule = f"{self.endpoint}-data-quality"
        self.pipeline_name = names.model_resource(self.model)
        self.reports_prefix = f"models/{self.model}/monitoring/data-quality/{self.stage}/"
        self.capture_prefix = f"{names.data_capture_prefix(self.model, self.stage)}{self.endpoint}/{VARIANT}/"
        self.work = run.work / "drift"
        self.work.mkdir(parents=True, exist_ok=True)
        region, url = run.result.region, run.result.endpoint_url
        self.sns, self.sqs = make_client("sns", url, region), make_client("sqs", url, region)
        self.cooldown_hours = run.model.retraining.cooldown_hours

    def say(self, text: str) -> None:
        self.run.say(text)

    # ----------------------------------------------------------------------------------------------------------
    def execute(self) -> None:
        metadata = json.loads((self.run.pipeline.model_dir / "model_metadata.json").read_text())
        self.columns = list(metadata["encoded_columns"])
        statistics, constraints = self.baseline(self.run.pipeline, "build")
        normal, shifted, features = self.traffic(metadata)
        self.drift["shifted_features"] = features
        self.drift["shift"] = SHIFT
        topic_arn, queue_url = self.stand_ins()
        env = self.function_environment(topic_arn)
        handler = _load_handler(self.run)
        self.predict = _endpoint_predictor(self.run)
        now = dt.datetime.now(dt.timezone.utc)

        hour1 = self.monitor("as trained on", normal, now - dt.timedelta(hours=1), statistics, constraints)
        if hour1["violations"]:
            raise RuntimeError(f"drift found in unchanged traffic: {hour1['violations']}")
        hour2 = self.monitor(f"{' and '.join(features)} x{SHIFT:g}", shifted, now, statistics, constraints)
        first = self.invoke(handler, env, hour2, "first")
        if first.get("outcome") != "started":
            raise RuntimeError(f"the drift function did not start a retrain: {first}")
        messages = self.received(queue_url)
        notification = messages[0] if messages else {}
        self.drift["notification"] = notification
        drifted = ", ".join(self.label(n) for n in first.get("features", []))
        self.say(f"drift: {drifted} (baseline_drift_check) -> retrain started (execution "
                 f"{first['pipeline_execution_arn']})")
        self.say(f"alarm topic {topic_arn.split(':')[-1]}: \"{notification.get('subject', '(nothing received)')}\"")
        for line in notification.get("message", "").splitlines():
            self.say(f"  | {line}")

        retrain = self.retrain(first["pipeline_execution_arn"])
        statistics2, constraints2 = self.baseline(retrain, "retrain")
        hour3 = self.monitor("the same drifted traffic, retrained model's baseline", shifted,
                             now + dt.timedelta(hours=1), statistics2, constraints2)
        second = self.invoke(handler, env, hour3, "second")
        after = self.seconds_since_start(first["pipeline_execution_arn"])
        extra = self.received(queue_url)
        executions = self.executions()
        self.drift.update(executions=len(executions), notifications_in_cooldown=len(extra))
        if second.get("outcome") != "cooldown" or len(executions) != 1:
            raise RuntimeError(f"the cooldown did not hold: {second}, {len(executions)} executions")
        self.say(f"drift again {after:.0f} s after the retrain started (the next hour's monitoring execution, "
                 f"against the retrained model's baseline, run now) -> cooldown {self.cooldown_hours:g} h holds "
                 f"until {second.get('cooldown_until')}, no second retrain ({len(executions)} execution of "
                 f"{self.pipeline_name}; {len(extra)} new message on the topic: a drift in the cooldown is logged "
                 "and counted, not published)")

    # ----------------------------------------------------------------------------------------------------------
    def label(self, name: str) -> str:
        """``_c1`` -> ``length (_c1)``: Model Monitor names headerless columns by position."""
        index = int(name[2:]) if name.startswith("_c") and name[2:].isdigit() else -1
        return f"{self.columns[index]} ({name})" if 0 <= index < len(self.columns) else name

    def baseline(self, pipeline: Any, which: str) -> tuple[dict, dict]:
        """statistics.json and constraints.json of the build's baseline dataset, uploaded next to its model."""
        rows = drift_check.read_csv_rows((pipeline.outputs["baseline"] / "baseline.csv").read_text())
        statistics, constraints = drift_check.baseline(rows)
        out = self.work / which / "baseline"
        drift_check.write_baseline(statistics, constraints, out)
        prefix = f"{self.model}/drift-demo-{which}/baseline"
        for path in out.iterdir():
            self.run.s3.upload_file(str(path), self.artifacts, f"{prefix}/{path.name}")
        distribution = constraints["monitoring_config"]["distribution_constraints"]
        uri = f"s3://{self.artifacts}/{prefix}/"
        self.drift.setdefault("baselines", {})[which] = {"uri": uri, "rows": len(rows), **distribution}
        self.say(f"baseline of the {which} (sagemaker_steps/drift_check.py for the QualityCheck step's analyzer): "
                 f"{len(rows)} rows x {len(self.columns)} encoded features, KLL sketches -> {uri}statistics.json, "
                 f"constraints.json (comparison {distribution['comparison_method']}, threshold "
                 f"{distribution['comparison_threshold']:g})")
        return statistics, constraints

    def traffic(self, metadata: dict) -> tuple[list[list[str]], list[list[str]], list[str]]:
        """The test split's encoded rows (requests), and a copy with the first numerical features shifted."""
        with (self.run.pipeline.outputs["test"] / "test.csv").open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            records = [row for row in reader if row]
        index = [header.index(c) for c in self.columns]
        rows = [[row[i] for i in index] for row in records]
        numeric = [f["name"] for f in metadata["features"] if f["type"] == "numeric"][:SHIFTED_FEATURES]
        positions = [self.columns.index(name) for name in numeric]
        shifted = [[f"{float(v) * SHIFT:.6g}" if i in positions else v for i, v in enumerate(row)] for row in rows]
        return rows, shifted, numeric

    def stand_ins(self) -> tuple[str, str]:
        """The model's build pipeline (by name; its steps run locally) and the alarm topic with a queue on it."""
        from botocore.exceptions import ClientError
        from sagemaker_steps import pipeline_spec as spec

        definition = {"Version": "2020-12-01", "Metadata": {"demo": "stand-in: the demo runs the steps locally"},
                      "Parameters": [{"Name": n, "Type": p["type"], **({"DefaultValue": p["default"]}
                                                                        if p["default"] is not None else {})}
                                     for n, p in spec.PIPELINE_PARAMETERS.items()],
                      "Steps": [{"Name": s.name, "Type": s.step_type}
                                for s in spec.pipeline_steps(self.run.model.framework)]}
        try:
            self.run.sm.create_pipeline(PipelineName=self.pipeline_name, PipelineDefinition=json.dumps(definition),
                                        RoleArn="arn:aws:iam::123456789012:role/demo-pipeline")
        except ClientError as exc:
            if "already exists" not in str(exc):
                raise
        topic_arn = self.sns.create_topic(Name=self.run.config.names.alarm_topic)["TopicArn"]
        queue_url = self.sqs.create_queue(QueueName=f"demo-alarms-{self.model}")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"]
        self.sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        self.say(f"stand-ins: pipeline {self.pipeline_name} (its steps run here), alarm topic {topic_arn} (a queue "
                 "subscribed to it reads what the team's e-mail would)")
        return topic_arn, queue_url

    def function_environment(self, topic_arn: str) -> dict[str, str]:
        """The drift function's environment, as the DriftRetraining construct sets it for this model's stage."""
        return {"PIPELINE_NAME": self.pipeline_name, "ALARM_TOPIC_ARN": topic_arn,
                "REPORTS_BUCKET": self.artifacts, "REPORTS_PREFIX": self.reports_prefix,
                "COOLDOWN_SECONDS": str(int(self.cooldown_hours * 3600)), "PIPELINE_PARAMETERS": "{}",
                "DRIFT_CHECK_TYPES": "baseline_drift_check,categorical_values_check",
                "NOTIFY_DURING_COOLDOWN": "false", "MODEL_NAME": self.model, "LOG_LEVEL": "INFO"}

    def monitor(self, what: str, rows: list[list[str]], hour: dt.datetime, statistics: dict, constraints: dict
                ) -> dict[str, Any]:
        """Capture ``rows`` as requests of the hour, then run the hour's monitoring execution on the capture."""
        hour = hour.replace(minute=0, second=0, microsecond=0)
        stamp = hour.strftime("%Y/%m/%d/%H")
        records = []
        for start in range(0, len(rows), ROWS_PER_REQUEST):
            batch = rows[start:start + ROWS_PER_REQUEST]
            body = "".join(",".join(r) + "\n" for r in batch)
            event_id = hashlib.sha256(f"{stamp}{start}{body}".encode()).hexdigest()[:32]
            at = (hour + dt.timedelta(seconds=start)).strftime("%Y-%m-%dT%H:%M:%SZ")
            records.append(json.dumps(drift_check.capture_record(body, event_id, at, self.predict(body))))
        capture_key = f"{self.capture_prefix}{stamp}/demo-{hour.strftime('%H')}.jsonl"
        self.run.s3.put_object(Bucket=self.artifacts, Key=capture_key, Body=("\n".join(records) + "\n").encode())
        # The monitoring execution: every capture file of the hour, against the baseline.
        listed = self.run.s3.list_objects_v2(Bucket=self.artifacts, Prefix=f"{self.capture_prefix}{stamp}/")
        captured: list[list[str]] = []
        for obj in listed.get("Contents", []):
            body = self.run.s3.get_object(Bucket=self.artifacts, Key=obj["Key"])["Body"].read().decode()
            captured.extend(drift_check.captured_rows(body))
        report = drift_check.check(statistics, constraints, captured)
        job = f"model-monitoring-{hour.strftime('%Y%m%d%H')}00-{hashlib.sha256(capture_key.encode()).hexdigest()[:8]}"
        output = f"{self.reports_prefix}{self.endpoint}/{self.schedule}/{stamp}"
        violations = report.violations()["violations"]
        if violations:
            path = drift_check.write_violations(report, self.work / job)
            self.run.s3.upload_file(str(path), self.artifacts, f"{output}/{path.name}")
        largest = max(report.features, key=lambda f: f.linf_simple)
        entry = {"what": what, "hour": stamp, "requests": len(records), "rows": len(captured), "job": job,
                 "capture": f"s3://{self.artifacts}/{capture_key}", "output": f"s3://{self.artifacts}/{output}",
                 "violations": violations,
                 "drifted": [self.label(f.name) for f in report.drifted],
                 "distances": {f.name: {"distance": round(f.distance, 4), "linf_simple": round(f.linf_simple, 4)}
                               for f in report.features}}
        self.drift.setdefault("monitoring", []).append(entry)
        found = (", ".join(f"{self.label(f.name)} {f.distance:.3f} (linf_simple {f.linf_simple:.3f})"
                           for f in report.drifted) or
                 f"no drift (largest linf_simple {largest.linf_simple:.3f}, {self.label(largest.name)}; distance "
                 f"{largest.distance:.3f})")
        self.say(f"hour {stamp}: {len(records)} requests ({len(captured)} rows, {what}) captured -> monitoring "
                 f"execution {job}: {found}"
                 + (f" > {report.features[0].threshold:g} -> {output}/{drift_check.VIOLATIONS_FILE}"
                    if violations else ""))
        return entry

    def invoke(self, handler: Any, env: dict[str, str], execution: dict[str, Any], which: str) -> dict[str, Any]:
        """The drift function on the monitoring execution's EventBridge event, its logs kept in the work dir."""
        event = _event(execution, self.run.result.region)
        out = io.StringIO()
        with patched_environ(env), contextlib.redirect_stdout(out):
            result = handler.handler(event, None)
        log = self.work / f"drift-function-{which}.jsonl"
        log.write_text(out.getvalue(), encoding="utf-8")
        metrics = [name for line in out.getvalue().splitlines() if line.startswith('{"_aws"')
                   for name in (m["Name"] for m in json.loads(line)["_aws"]["CloudWatchMetrics"][0]["Metrics"])]
        self.drift[which] = {**{k: v for k, v in result.items()}, "metrics": metrics}
        self.say(f"drift function ({which} event, monitoring execution {execution['job']}): outcome "
                 f"{result.get('outcome')}, metrics {', '.join(metrics)}")
        return result

    def received(self, queue_url: str) -> list[dict[str, str]]:
        messages = []
        for _ in range(3):
            got = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
                "Messages", [])
            for message in got:
                body = json.loads(message["Body"])
                messages.append({"subject": body.get("Subject", ""), "message": body.get("Message", "")})
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            if not got:
                break
        return messages

    def executions(self) -> list[dict[str, Any]]:
        return self.run.sm.list_pipeline_executions(PipelineName=self.pipeline_name)["PipelineExecutionSummaries"]

    def seconds_since_start(self, arn: str) -> float:
        start = next(e["StartTime"] for e in self.executions() if e["PipelineExecutionArn"] == arn)
        return (dt.datetime.now(dt.timezone.utc) - start).total_seconds()

    def retrain(self, execution_arn: str) -> Any:
        """The started execution, as the pipeline runs it: the same steps on the model's curated data, a new package
        version pending approval if the condition passes."""
        from demo.stages import git_commit, inference_image
        from sagemaker_steps import pipeline_spec as spec
        from sagemaker_steps.local_runner import run_local_pipeline

        run, model, result = self.run, self.run.model, self.run.result
        model_spec = dataclasses.replace(model.spec, threshold=result.threshold)
        pipeline = run_local_pipeline(run.work / "pipeline-input", self.work / "retrain", model_spec,
                                      training_source_dir=model.training_dir)
        retrain: dict[str, Any] = {"execution": execution_arn, "metric_value": float(pipeline.metric_value),
                                   "passed": bool(pipeline.passed),
                                   "seconds": round(sum(pipeline.durations.values()), 2)}
        if pipeline.passed:
            key = f"{model.name}/drift-demo-retrain/model.tar.gz"
            run.s3.upload_file(str(pipeline.model_artifact), self.artifacts, key)
            package = run.sm.create_model_package(
                ModelPackageGroupName=result.model_package_group,
                ModelPackageDescription=f"{model.name} {model.metric}={pipeline.metric_value:.4f} (drift retrain, "
                                        f"{execution_arn.split('/')[-1]})",
                ModelApprovalStatus="PendingManualApproval",
                InferenceSpecification={"Containers": [{
                    "Image": inference_image(model.framework, result.region),
                    "ModelDataUrl": f"s3://{self.artifacts}/{key}",
                    "Environment": spec.serving_environment(model.framework)}],
                    "SupportedContentTypes": ["text/csv", "application/json"],
                    "SupportedResponseMIMETypes": ["text/csv", "application/json"]},
                CustomerMetadataProperties={"GitCommit": git_commit(), "PipelineExecution": execution_arn},
            )
            described = run.sm.describe_model_package(ModelPackageName=package["ModelPackageArn"])
            retrain.update(package_arn=package["ModelPackageArn"], version=described.get("ModelPackageVersion"),
                           status=described.get("ModelApprovalStatus"))
        self.drift["retrain"] = retrain
        self.say(f"retrain (execution {execution_arn.split('/')[-1]}: the pipeline's steps, run locally on "
                 f"s3://{result.buckets['curated']}/{result.dataset}/ in {retrain['seconds']:.1f} s): "
                 f"{model.metric}={pipeline.metric_value:.4f} -> "
                 + (f"package version {retrain['version']} {retrain['status']} (on the same curated data: the demo "
                    "has no new rows; a reviewer approves it, like any build)" if pipeline.passed
                    else f"FailStep: {pipeline.fail_message}"))
        return pipeline


def _event(execution: dict[str, Any], region: str) -> dict[str, Any]:
    """The EventBridge 'SageMaker Processing Job State Change' event of a monitoring execution with violations."""
    job = execution["job"]
    arn = f"arn:aws:sagemaker:{region}:123456789012:processing-job/{job}"
    detail = {
        "ProcessingJobName": job, "ProcessingJobArn": arn, "ProcessingJobStatus": "Completed",
        "ExitMessage": f"CompletedWithViolations: Job completed successfully with {len(execution['violations'])} "
                       "violations.",
        "RoleArn": MONITOR_ROLE,
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "result", "S3Output": {
            "S3Uri": execution["output"], "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}}]},
    }
    return {"version": "0", "id": hashlib.sha256(job.encode()).hexdigest()[:36],
            "detail-type": "SageMaker Processing Job State Change", "source": "aws.sagemaker",
            "account": "123456789012", "time": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": region, "resources": [arn], "detail": detail}


def _load_handler(run: Any) -> Any:
    """``drift_handler.py`` imported as Lambda does (its dir on the path), with the demo's loopback clients."""
    added = str(DRIFT_CODE) not in sys.path
    if added:
        sys.path.insert(0, str(DRIFT_CODE))
    try:
        spec = importlib.util.spec_from_file_location("demo_drift_handler", DRIFT_CODE / "drift_handler.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if added:
            sys.path.remove(str(DRIFT_CODE))
    region, url = run.result.region, run.result.endpoint_url
    module._clients.update(s3=run.s3, sagemaker=run.sm, sns=make_client("sns", url, region))
    return module


def _endpoint_predictor(run: Any) -> Any:
    """The package's own code/serve.py on a text/csv body (the endpoint's answer the capture records)."""
    model_dir = run.work / "serving" / "model"
    code = model_dir / "code" / "serve.py"
    if not code.is_file():
        return lambda body: None
    spec = importlib.util.spec_from_file_location(f"demo_drift_serve_{run.model.name}", code)
    assert spec is not None and spec.loader is not None
    serve_py = importlib.util.module_from_spec(spec)
    with patched_environ({"SM_MODEL_DIR": str(model_dir)}):
        spec.loader.exec_module(serve_py)
        loaded = serve_py.model_fn(str(model_dir))

    def predict(body: str) -> Optional[str]:
        answer, _ = serve_py.output_fn(serve_py.predict_fn(serve_py.input_fn(body, "text/csv"), loaded), "text/csv")
        return answer

    return predict
