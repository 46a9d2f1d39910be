"""The loop's closing entry points (issue 14), rehearsed as their services run them: batch inference, drift-triggered
retraining, ground-truth ingestion for model quality. Called by :mod:`rehearsal.loop` once every model is approved,
deployed and smoke-tested (stages 8 to 10); each returns the facts of its stage or raises :class:`RehearsalError`.

8. **Batch inference** (:func:`batch_inference`), per model stack with an ``AWS::StepFunctions::StateMachine``: the
   state machine's synthesized definition interpreted as Step Functions runs it (:class:`StateMachineRun`: ``Task``,
   ``Choice``, ``Succeed``, ``Fail``; ``Parameters`` with ``.$`` paths, ``$$.Execution.*``, ``States.Array`` and
   ``States.Format``; ``ResultSelector``, ``ResultPath``, ``Catch``), each service call authorized against the state
   machine role's policies (``lambda:InvokeFunction``; ``sagemaker:Create*``/``Describe*``/``AddTags``/``DeleteModel``,
   ``iam:PassRole`` of the job and model roles, and the managed rules ``.sync`` integrations put:
   ``events:PutTargets``/``PutRule``/``DescribeRule``). The Plan Lambda runs from its zip under its role
   (:mod:`rehearsal.serving`'s function stand-in); the processing jobs as :mod:`rehearsal.pipeline_jobs` runs a
   pipeline's (script asset at the entry point, inputs downloaded and outputs uploaded under the job role, network
   isolation); CreateModel's container served by its own ``serve.py`` as the endpoint rehearsal serves a package
   (:class:`rehearsal.endpoint.EndpointStandIn`, model data staged with the model's execution role), the transform
   played as SageMaker's batch transform does it (each input object's lines, ``MultiRecord`` mini-batches of at most
   ``MaxPayloadInMB``, ``InputFilter``, ``JoinSource: Input``, ``OutputFilter``, ``AssembleWith: Line``, one
   ``<object>.out`` per input object under the model role). The predictions are read as the Glue table declares
   them: the Parquet columns and types of ``StorageDescriptor.Columns``, one row per curated row of the scored
   partition, the package's ARN and version. Before any approval the plan must end the run with ``NothingToScore``.
9. **Drift retrains once per cooldown** (:func:`drift_retrains_once`), on each serving stage that has the drift
   function (``HasBaseline``): a Model Monitor ``constraint_violations.json`` (one drift, one completeness violation)
   written with the monitor's role where its schedule writes reports; the ``SageMaker Processing Job State Change``
   event of that execution matched against the deployed rule; the function run from its zip under its role: outcome
   ``started``, exactly one new execution of the model's pipeline (ListPipelineExecutions on the stand-in), one topic
   message naming only the drifted feature; a second execution's event within the cooldown: ``cooldown``, nothing new.
10. **Ground truth and model quality** (:func:`ground_truth_and_model_quality`), on each serving stage with the
   ground-truth function: requests with inference IDs (through the ``endpoint_proxy`` function when the stage has
   one, else ``InferenceId`` to the endpoint stand-in) captured with ``eventMetadata.inferenceId``; a labels CSV with
   good and bad rows uploaded under ``Names.ground_truth_upload_prefix`` of the raw bucket; the S3 ``Object Created``
   event matched against the deployed rule; the function run from its zip under its role: the Model Monitor
   ground-truth file in the hour's folder (which the model-quality job definition reads), the rejected rows and the
   report in quarantine, one topic message; then the capture's ``inferenceId`` joined with the ground truth's
   ``eventId`` and the model's metric computed from the joined pairs, as the model-quality job would.

Not emulated: Step Functions' retries (a failed task is caught as the definition says), the Model Monitor analyzer
itself (its report is written by the rehearsal), EventBridge delivery (the rule's pattern is matched, its target
checked, the function invoked directly).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
import secrets
import string
import uuid
from typing import Any, Optional

from rehearsal.assembly import ACCOUNT, REGION, RehearsalError, Stack, resolved_properties
from rehearsal.cloud import DENIALS, Denial, _LOCK, _policy_documents_of_role, evaluate
from rehearsal.context import Rehearsal, split_s3_uri

DRIFT_HANDLER = "drift_handler.handler"
GROUND_TRUTH_HANDLER = "ground_truth_handler.handler"
PLAN_HANDLER = "batch_resolve.handler"


# --- shared -----------------------------------------------------------------------------------------------------------
def _function_of(rh: Rehearsal, stack: Stack, handler: str) -> Optional[tuple[str, dict]]:
    """(logical ID, resource) of the stack's function with ``handler``, if it is deployed (its Condition holds)."""
    for logical, res in stack.of_type("AWS::Lambda::Function").items():
        if res["Properties"].get("Handler") != handler:
            continue
        condition = res.get("Condition")
        if condition and not rh.assembly.resolver.condition(stack, condition):
            return None
        return logical, res
    return None


def _stand_in(rh: Rehearsal, stack: Stack, logical: str, res: dict):
    from rehearsal import serving

    return serving._function(rh, stack, logical, res, None, None)


def _rule_for(rh: Rehearsal, stack: Stack, target_arn: str, event: dict, what: str) -> dict:
    """The stack's EventBridge rule that targets ``target_arn``: its pattern must match ``event``."""
    from rehearsal.loop import _matches

    resolver = rh.assembly.resolver
    rules = []
    for logical, res in stack.of_type("AWS::Events::Rule").items():
        condition = res.get("Condition")
        if condition and not resolver.condition(stack, condition):
            continue
        props = resolver.resolve(stack, res["Properties"])
        if any(t.get("Arn") == target_arn for t in props.get("Targets", [])):
            rules.append((logical, props))
    if not rules:
        raise RehearsalError(f"{stack.name}: no EventBridge rule targets {target_arn}: {what} never reaches it")
    for logical, props in rules:
        if props.get("State", "ENABLED") == "ENABLED" and _matches(props.get("EventPattern") or {}, event):
            return {"rule": logical, "pattern": props.get("EventPattern")}
    raise RehearsalError(
        f"{stack.name}: the rule(s) {[l for l, _ in rules]} targeting {target_arn} do not match {what}: "
        f"pattern(s) {[p.get('EventPattern') for _, p in rules]} vs the event {json.dumps(event)[:800]}"
    )


def topic_messages(topic_arn: str) -> list[dict[str, Any]]:
    """What was published to ``topic_arn`` in the stand-in account (moto's record), oldest first."""
    from moto.sns.models import sns_backends

    topic = sns_backends[ACCOUNT][REGION].topics.get(topic_arn)
    if topic is None:
        raise RehearsalError(f"topic {topic_arn} does not exist in the stand-in account")
    return [{"subject": subject, "message": message} for _, message, subject, *_ in topic.sent_notifications]


def _authorize(rh: Rehearsal, role_arn: str, action: str, resource: str, what: str) -> None:
    """The IAM decision for a call a service makes with a role it assumed (without the call: moto does not run it)."""
    if not evaluate(_policy_documents_of_role(rh.cloud, role_arn), action, [[resource]]):
        with _LOCK:
            DENIALS.append(Denial(role_arn, action, (resource,)))
        raise RehearsalError(f"{what}: AccessDenied: {role_arn} is not authorized to perform {action} on {resource}")


def _invoke(function, event: dict, what: str) -> Any:
    invocation = function.run(event)
    if not invocation.ok:
        raise RehearsalError(f"{what}: the function failed ({invocation.phase}): "
                             f"{json.dumps(invocation.result)[:1500]}\n{invocation.stderr[-1500:]}")
    return invocation.result


# --- 9. drift retrains once per cooldown ------------------------------------------------------------------------------
def ensure_pipeline(rh: Rehearsal, model_stack: Stack) -> str:
    """The model's pipeline in the stand-in account (what the model stack's ``AWS::SageMaker::Pipeline`` creates), so
    ListPipelineExecutions and StartPipelineExecution find it. Returns its name."""
    from rehearsal.pipeline_definition import pipeline_definition

    logical, props, definition = pipeline_definition(rh, model_stack)
    name = props.get("PipelineName") or rh.assembly.resolver.name(model_stack, logical)
    sm = rh.cloud.admin("sagemaker")
    existing = {p["PipelineName"] for p in sm.list_pipelines().get("PipelineSummaries", [])}
    if name not in existing:
        sm.create_pipeline(PipelineName=name, PipelineDefinition=json.dumps(definition), RoleArn=props["RoleArn"])
    return name


def _executions(rh: Rehearsal, pipeline: str) -> list[dict]:
    return rh.cloud.admin("sagemaker").list_pipeline_executions(PipelineName=pipeline)["PipelineExecutionSummaries"]


def drift_retrains_once(rh: Rehearsal, model: str, stage: str, *, run_execution: bool = False) -> dict[str, Any]:
    """Stage 9 for one serving stage (module docstring). ``run_execution``: also run the started execution with
    :func:`rehearsal.pipeline.run_pipeline` and the parameters the function passed."""
    stack = rh.assembly.stack(f"-serving-{model}-{stage}")
    found = _function_of(rh, stack, DRIFT_HANDLER)
    if found is None:
        raise RehearsalError(f"{stack.name}: no drift-retraining function is deployed ({DRIFT_HANDLER}; its "
                             "condition, e.g. HasBaseline, does not hold)")
    function = _stand_in(rh, stack, *found)
    env = function.environment
    model_stack = rh.assembly.stack(f"-model-{model}")
    pipeline = ensure_pipeline(rh, model_stack)
    if env.get("PIPELINE_NAME") != pipeline:
        raise RehearsalError(f"{stack.name}: the drift function starts pipeline {env.get('PIPELINE_NAME')!r}, the "
                             f"model stack's pipeline is {pipeline!r}")

    # Where the data-quality schedule writes its reports, and the role its jobs run with.
    (jd_logical, _), = stack.of_type("AWS::SageMaker::DataQualityJobDefinition").items()
    jd = resolved_properties(rh.assembly, stack, jd_logical)
    schedules = [k for k in stack.of_type("AWS::SageMaker::MonitoringSchedule") if "DataQuality" in k]
    schedule = (resolved_properties(rh.assembly, stack, schedules[0]).get("MonitoringScheduleName")
                if schedules else None) or f"{model}-{stage}-data-quality"
    output_uri = jd["DataQualityJobOutputConfig"]["MonitoringOutputs"][0]["S3Output"]["S3Uri"].rstrip("/")
    endpoint = jd["DataQualityJobInput"]["EndpointInput"]["EndpointName"]
    monitor_role = jd["RoleArn"]
    now = dt.datetime.now(dt.timezone.utc)
    report_dir = f"{output_uri}/{endpoint}/{schedule}/{now:%Y/%m/%d/%H}"
    bucket, key_prefix = split_s3_uri(report_dir)
    if bucket != env.get("REPORTS_BUCKET") or not (key_prefix + "/").startswith(env.get("REPORTS_PREFIX", "")):
        raise RehearsalError(f"{stack.name}: the monitor writes its reports under {output_uri}, the drift function "
                             f"reads s3://{env.get('REPORTS_BUCKET')}/{env.get('REPORTS_PREFIX')}")

    features = _monitored_features(rh, stack)
    drifted, incomplete = features[0], features[-1]
    violations = {"violations": [
        {"feature_name": drifted, "constraint_check_type": "baseline_drift_check",
         "description": f"Baseline drift distance: 0.42 exceeds threshold: 0.1"},
        {"feature_name": incomplete, "constraint_check_type": "completeness_check",
         "description": "Data completeness: 0.9 is below the baseline's 1.0"},
    ]}
    monitor_s3 = rh.cloud.client("s3", monitor_role)
    try:
        monitor_s3.put_object(Bucket=bucket, Key=f"{key_prefix}/constraint_violations.json",
                              Body=json.dumps(violations).encode())
    except Exception as exc:
        raise RehearsalError(f"{stack.name}: the monitor role {monitor_role} cannot write its report to "
                             f"{report_dir}: {exc}") from None

    def event(job: str) -> dict:
        job_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:processing-job/{job}"
        return {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": "SageMaker Processing Job State Change",
            "source": "aws.sagemaker", "account": ACCOUNT, "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION, "resources": [job_arn],
            "detail": {
                "ProcessingJobName": job, "ProcessingJobArn": job_arn, "ProcessingJobStatus": "Completed",
                "ExitMessage": "CompletedWithViolations: Job completed successfully with 2 violations.",
                "RoleArn": monitor_role,
                "MonitoringScheduleArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:monitoring-schedule/{schedule}",
                "ProcessingOutputConfig": {"Outputs": [{"OutputName": "result", "S3Output": {
                    "S3Uri": report_dir, "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "Continuous"}}]},
            },
        }

    first = event(f"model-monitoring-{now:%Y%m%d%H}00-{secrets.token_hex(4)}")
    rule = _rule_for(rh, stack, function.arn, first, "the monitoring execution's state-change event")
    topic = env["ALARM_TOPIC_ARN"]
    before, messages_before = len(_executions(rh, pipeline)), len(topic_messages(topic))
    result = _invoke(function, first, f"{stack.name}: drift function")
    after = _executions(rh, pipeline)
    messages = topic_messages(topic)[messages_before:]
    if result.get("outcome") != "started":
        denied = " (AccessDenied)" if "AccessDenied" in json.dumps(result) else ""
        raise RehearsalError(f"{stack.name}: drift did not start a retrain{denied}: outcome {result.get('outcome')!r}, "
                             f"{result.get('problem') or result}")
    if len(after) - before != 1:
        raise RehearsalError(f"{stack.name}: drift started {len(after) - before} executions of {pipeline}, not one")
    if len(messages) != 1:
        raise RehearsalError(f"{stack.name}: the started retrain published {len(messages)} messages to {topic}, "
                             "not one")
    text = messages[0]["subject"] + "\n" + messages[0]["message"]
    if drifted not in text or re.search(rf"\b{re.escape(incomplete)}\b", text):
        raise RehearsalError(f"{stack.name}: the message must name the drifted feature {drifted} and not the "
                             f"incomplete {incomplete}: {text[:600]}")

    second = event(f"model-monitoring-{now:%Y%m%d%H}00-{secrets.token_hex(4)}")
    again = _invoke(function, second, f"{stack.name}: drift function (second execution)")
    if again.get("outcome") != "cooldown":
        raise RehearsalError(f"{stack.name}: a second drift within the cooldown gave {again.get('outcome')!r}, "
                             f"not 'cooldown': {again}")
    if len(_executions(rh, pipeline)) != len(after):
        raise RehearsalError(f"{stack.name}: a drift within the cooldown started another execution of {pipeline}")
    facts = {"rule": rule["rule"], "report": f"{report_dir}/constraint_violations.json", "first": result["outcome"],
             "execution": result.get("pipeline_execution_arn"), "features": result.get("features"),
             "second": again["outcome"], "messages": len(messages), "subject": messages[0]["subject"]}
    if run_execution:
        from rehearsal import pipeline as pipeline_runner

        started = rh.cloud.admin("sagemaker").describe_pipeline_execution(
            PipelineExecutionArn=result["pipeline_execution_arn"])
        params = {p["Name"]: p["Value"] for p in started.get("PipelineParameters") or []}
        run = pipeline_runner.run_pipeline(rh, model_stack, params).check()
        facts["retrained_package"] = run.model_package_arn or (
            "none: the challenger lost the champion comparison" if getattr(run, "rejected_by_champion", False)
            else None)
    return facts


def _monitored_features(rh: Rehearsal, stack: Stack) -> list[str]:
    """Feature names as Model Monitor names the captured CSV columns (``_c0``..): the baseline's, when readable."""
    params = {k: v for (s, k), v in rh.assembly.resolver.overrides.items() if s == stack.name}
    uri = params.get("BaselineConstraintsUrl")
    if uri and uri != "none":
        try:
            bucket, key = split_s3_uri(uri)
            doc = json.loads(rh.cloud.admin("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
            names = [f["name"] for f in doc.get("features", []) if f.get("name")]
            if len(names) >= 2:
                return names
        except Exception:  # noqa: BLE001 (a baseline that cannot be read: the analyzer's default names)
            pass
    return ["_c0", "_c1", "_c2"]


# --- 10. ground truth and model quality -------------------------------------------------------------------------------
def ground_truth_and_model_quality(rh: Rehearsal, model: str, stage: str, deployment: Any = None,
                                   requests: int = 6) -> dict[str, Any]:
    """Stage 10 for one serving stage (module docstring). ``deployment``: the stage's
    :class:`rehearsal.serving.ServingDeployment` (its endpoint, and its function in ``endpoint_proxy`` mode)."""
    from platform_config.names import Names

    stack = rh.assembly.stack(f"-serving-{model}-{stage}")
    found = _function_of(rh, stack, GROUND_TRUTH_HANDLER)
    if found is None:
        raise RehearsalError(f"{stack.name}: no ground-truth function is deployed ({GROUND_TRUTH_HANDLER})")
    function = _stand_in(rh, stack, *found)
    env = function.environment
    raw_bucket = _raw_bucket(rh)
    prefix = Names.ground_truth_upload_prefix(model, stage)
    now = dt.datetime.now(dt.timezone.utc)
    key = f"{prefix}labels-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}.csv"
    probe = _object_created(raw_bucket, key, 100, "0" * 32, None, now)
    rule = _rule_for(rh, stack, function.arn, probe, f"the upload of s3://{raw_bucket}/{key}")
    if env.get("UPLOAD_PREFIX") != prefix:
        raise RehearsalError(f"{stack.name}: the function's UPLOAD_PREFIX is {env.get('UPLOAD_PREFIX')!r}, users "
                             f"upload under {prefix!r} (Names.ground_truth_upload_prefix)")

    # The model-quality job definition reads the ground truth where the function writes it, and the endpoint's capture.
    (mq_logical, _), = stack.of_type("AWS::SageMaker::ModelQualityJobDefinition").items()
    mq = resolved_properties(rh.assembly, stack, mq_logical)
    mq_input = mq["ModelQualityJobInput"]
    written_at = f"s3://{env['OUTPUT_BUCKET']}/{env['GROUND_TRUTH_PREFIX']}".rstrip("/")
    if mq_input["GroundTruthS3Input"]["S3Uri"].rstrip("/") != written_at:
        raise RehearsalError(f"{stack.name}: the model-quality job reads ground truth at "
                             f"{mq_input['GroundTruthS3Input']['S3Uri']}, the function writes it to {written_at}/")
    if deployment is None or deployment.endpoint is None:
        raise RehearsalError(f"{stack.name}: model quality needs the endpoint's data capture, and the stage serves no "
                             "endpoint")
    endpoint = deployment.endpoint
    if mq_input["EndpointInput"]["EndpointName"] != endpoint.name:
        raise RehearsalError(f"{stack.name}: the model-quality job monitors {mq_input['EndpointInput']['EndpointName']}"
                             f", the stage serves {endpoint.name}")
    capture_uri = (endpoint.data_capture or {}).get("DestinationS3Uri", "")
    if f"s3://{env['OUTPUT_BUCKET']}/{env.get('CAPTURE_PREFIX', '')}".rstrip("/") != capture_uri.rstrip("/"):
        raise RehearsalError(f"{stack.name}: the function reads the capture under s3://{env['OUTPUT_BUCKET']}/"
                             f"{env.get('CAPTURE_PREFIX')}, the endpoint captures to {capture_uri}")

    # Requests with inference IDs: through the endpoint_proxy function (curated rows as its instances), else rows the
    # endpoint already accepted (the smoke test's captured requests) with InvokeEndpoint's InferenceId. Data capture
    # samples (InitialSamplingPercentage): requests go on until ``requests`` of them are captured (at most 25 times
    # as many); Model Monitor joins the captured ones only.
    proxy = deployment.function is not None and deployment.function.environment.get("INFERENCE_MODE") == \
        "endpoint_proxy"
    via = "the endpoint_proxy function" if proxy else "InvokeEndpoint with InferenceId"
    limit = requests * 25
    rows = _instances(rh, endpoint, model, limit) if proxy else _captured_rows(endpoint)
    if not rows:
        raise RehearsalError(f"{stack.name}: no request rows for {endpoint.name} ({via})")
    sampling = float((endpoint.data_capture or {}).get("InitialSamplingPercentage", 0))
    column = int(mq_input["EndpointInput"].get("InferenceAttribute") or 0)
    answered: dict[str, float] = {}  # inference ID -> the prediction the caller received
    captured: dict[str, dict] = {}
    for n in range(limit):
        inference_id = f"rehearsal-{stage}-{n:03d}-{secrets.token_hex(3)}"
        row = rows[n % len(rows)]
        if proxy:
            answered[inference_id] = _invoke_proxy(deployment.function, row, inference_id, stack.name)
        else:
            response = endpoint.invoke(row, "text/csv", "text/csv", inference_id=inference_id)
            if response.status != 200:
                raise RehearsalError(f"{endpoint.name}: InvokeEndpoint failed ({response.status}): {response.text()}")
            answered[inference_id] = float(next(csv.reader([response.text().strip().splitlines()[0]]))[column])
        if n + 1 >= requests and (sampling >= 100 or n % requests == requests - 1 or n + 1 == limit):
            captured = {r["eventMetadata"].get("inferenceId"): r for r in endpoint.captured_records()
                        if r.get("eventMetadata", {}).get("inferenceId") in answered}
            if len(captured) >= requests or sampling >= 100:
                break
    ids = list(answered)
    if not captured or (sampling >= 100 and set(captured) != set(ids)):
        raise RehearsalError(f"{endpoint.name}: the capture carries {len(captured)} of the {len(ids)} inference IDs "
                             f"sent ({via}, capture sampling {sampling:g}%): eventMetadata.inferenceId is missing")
    predictions = {i: float(next(csv.reader([captured[i]["captureData"]["endpointOutput"]["data"]
                                             .strip().splitlines()[0]]))[column]) for i in captured}
    problem = mq["ModelQualityAppSpecification"]["ProblemType"]

    # The labels of every answered request (what a user uploads), each good one at a known distance from the
    # prediction the caller received; then rows the function must reject.
    labels = {}
    lines = ["inference_id,label"]
    for i in ids:
        labels[i] = round(answered[i] + 1.0, 6) if problem == "Regression" else int(answered[i] >= 0.5)
        lines.append(f"{i},{labels[i]}")
    bad = [f"{ids[0]},{labels[ids[0]]}",  # duplicate
           ",3.0",  # missing inference ID
           f"rehearsal-bad-label-{secrets.token_hex(3)},not-a-number"]
    lines += bad
    body = ("\n".join(lines) + "\n").encode()
    s3 = rh.cloud.admin("s3")  # the user who uploads labels
    put = s3.put_object(Bucket=raw_bucket, Key=key, Body=body, ContentType="text/csv")
    event = _object_created(raw_bucket, key, len(body), put["ETag"].strip('"'), put.get("VersionId"),
                            dt.datetime.now(dt.timezone.utc))
    _rule_for(rh, stack, function.arn, event, f"the upload of s3://{raw_bucket}/{key}")
    topic = env["ALARM_TOPIC_ARN"]
    messages_before = len(topic_messages(topic))
    report = _invoke(function, event, f"{stack.name}: ground-truth function")
    messages = topic_messages(topic)[messages_before:]
    counts = report.get("counts") or {}
    if report.get("outcome") != "ingested":
        raise RehearsalError(f"{stack.name}: the ground truth was not ingested: {json.dumps(report)[:1500]}")
    if counts.get("written") != len(ids) or counts.get("rejected") != len(bad):
        raise RehearsalError(f"{stack.name}: expected {len(ids)} rows written and {len(bad)} rejected, the report "
                             f"says {counts}: {json.dumps(report)[:1500]}")
    captures = report.get("captures") or {}
    unmatched = len(ids) - len(captured)
    if env.get("CAPTURE_PREFIX") and (not captures.get("checked")
                                      or captures.get("unmatched_inference_id") != unmatched):
        raise RehearsalError(f"{stack.name}: the function's capture check should find {len(captured)} of the "
                             f"{len(ids)} inference IDs in the endpoint's capture ({unmatched} not sampled): "
                             f"{captures}")
    hour = event["time"][:13].replace("-", "/").replace("T", "/")
    truth = _objects(s3, env["OUTPUT_BUCKET"], f"{env['GROUND_TRUTH_PREFIX']}{hour}/")
    quarantine = _objects(s3, env["OUTPUT_BUCKET"], f"{env['QUARANTINE_PREFIX']}{hour}/")
    truth_files = [k for k in truth if k.endswith(".jsonl")]
    if len(truth_files) != 1:
        raise RehearsalError(f"{stack.name}: expected one ground-truth file under {env['GROUND_TRUTH_PREFIX']}{hour}/, "
                             f"found {truth_files}")
    if not any(k.endswith(".rejected.jsonl") for k in quarantine) or not any(k.endswith(".report.json")
                                                                            for k in quarantine):
        raise RehearsalError(f"{stack.name}: the quarantine {env['QUARANTINE_PREFIX']}{hour}/ holds {quarantine}: "
                             "expected the rejected rows and the report")
    if len(messages) != 1:
        raise RehearsalError(f"{stack.name}: rejected rows published {len(messages)} messages to {topic}, not one")
    # Model Monitor's join, by the model-quality job's role: capture inferenceId = ground truth eventId.
    mq_s3 = rh.cloud.client("s3", mq["RoleArn"])
    try:
        ground_truth = [json.loads(line) for line in mq_s3.get_object(Bucket=env["OUTPUT_BUCKET"], Key=truth_files[0])
                        ["Body"].read().decode().splitlines() if line.strip()]
    except Exception as exc:
        raise RehearsalError(f"{stack.name}: the model-quality role cannot read {truth_files[0]}: {exc}") from None
    joined = [(predictions[g["eventMetadata"]["eventId"]], float(g["groundTruthData"]["data"]))
              for g in ground_truth if g["eventMetadata"]["eventId"] in predictions]
    if len(joined) != len(captured):
        raise RehearsalError(f"{stack.name}: {len(joined)} of {len(captured)} ground-truth records join a captured "
                             "inference (eventMetadata.eventId vs the capture's eventMetadata.inferenceId)")
    if problem == "Regression":
        metric, value, expected = "rmse", math.sqrt(sum((p - y) ** 2 for p, y in joined) / len(joined)), 1.0
    else:
        metric = "accuracy"
        value, expected = sum((p >= 0.5) == (y >= 0.5) for p, y in joined) / len(joined), 1.0
    if abs(value - expected) > 1e-3:
        raise RehearsalError(f"{stack.name}: the joined {metric} is {value}, expected {expected}: predictions and "
                             "labels do not line up")
    return {"rule": rule["rule"], "upload": f"s3://{raw_bucket}/{key}", "requests": via, "sent": len(ids),
            "captured": len(captured), "counts": counts,
            "ground_truth": f"s3://{env['OUTPUT_BUCKET']}/{truth_files[0]}", "quarantine": sorted(quarantine),
            "messages": len(messages), "joined": len(joined), "metric": {"name": metric, "value": round(value, 6)}}


def _raw_bucket(rh: Rehearsal) -> str:
    data = rh.assembly.stack("-data")
    names = [rh.assembly.resolver.name(data, logical) for logical in data.of_type("AWS::S3::Bucket")
             if "raw" in logical.lower()]
    if len(names) != 1:
        raise RehearsalError(f"{data.name}: expected one raw bucket, found {names}")
    return names[0]


def _object_created(bucket: str, key: str, size: int, etag: str, version: Optional[str], when: dt.datetime) -> dict:
    obj: dict[str, Any] = {"key": key, "size": size, "etag": etag, "sequencer": "0055AED6DCD90281E5"}
    if version:
        obj["version-id"] = version
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
            "account": ACCOUNT, "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": REGION,
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {"version": "0", "bucket": {"name": bucket}, "object": obj, "request-id": "REHEARSAL",
                       "requester": ACCOUNT, "source-ip-address": "127.0.0.1", "reason": "PutObject"}}


def _objects(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def _captured_rows(endpoint: Any) -> list[str]:
    rows = []
    for record in endpoint.captured_records():
        data = (record.get("captureData") or {}).get("endpointInput") or {}
        if data.get("encoding") == "CSV":
            rows += [line for line in data.get("data", "").splitlines() if line.strip()]
    return list(dict.fromkeys(rows))


def _instances(rh: Rehearsal, endpoint: Any, model: str, count: int) -> list[dict]:
    """Rows of the model's curated data as the inference function takes them (the package's feature names)."""
    import pyarrow.parquet as pq

    metadata = json.loads((endpoint.root / "model" / "model_metadata.json").read_text())
    names = [f["name"] for f in metadata.get("features", [])]
    dataset = ((rh.facts.get("models") or {}).get(model) or {}).get("dataset")
    from rehearsal.glue import read_jobs

    curated = read_jobs(rh)[dataset].arguments["--curated_path"] if dataset else None
    if not curated:
        raise RehearsalError(f"model {model}: no curated data to send to its inference function")
    s3 = rh.cloud.admin("s3")
    bucket, prefix = split_s3_uri(curated)
    for key in _objects(s3, bucket, prefix):
        if key.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()), columns=names)
            rows = [r for r in table.to_pylist() if all(v is not None for v in r.values())]
            if rows:
                return rows[:count]
    return []


def _invoke_proxy(function: Any, row: dict, inference_id: str, where: str) -> float:
    """One request through the endpoint_proxy function (a Function URL event), naming its inference ID; returns the
    prediction the caller received."""
    from rehearsal.serving import _url_event

    body = json.dumps({"instances": [row], "inference_id": inference_id}, default=str).encode()
    event = _url_event("POST", "https://rehearsal.lambda-url.local/", "/", {"Content-Type": "application/json",
                       "X-Inference-Id": inference_id}, body, f"arn:aws:iam::{ACCOUNT}:role/rehearsal-caller")
    result = _invoke(function, event, f"{where}: inference function (endpoint_proxy)")
    payload = json.loads(result.get("body") or "{}") if isinstance(result, dict) and "statusCode" in result else result
    if isinstance(result, dict) and result.get("statusCode", 200) != 200:
        raise RehearsalError(f"{where}: the endpoint_proxy function answered {result.get('statusCode')}: {payload}")
    if (payload or {}).get("inference_id") != inference_id:
        raise RehearsalError(f"{where}: the endpoint_proxy function returned inference_id "
                             f"{(payload or {}).get('inference_id')!r}, not {inference_id!r}")
    prediction = (payload.get("predictions") or [None])[0]
    if isinstance(prediction, dict):  # a classifier's {"label", "probability"}-like answer
        prediction = next((v for k, v in prediction.items() if "prob" in k or "score" in k), None)
    try:
        return float(prediction)
    except (TypeError, ValueError):
        raise RehearsalError(f"{where}: the endpoint_proxy function's prediction {prediction!r} is not a number") \
            from None


# --- 8. batch inference -----------------------------------------------------------------------------------------------
class StateMachineRun:
    """One execution of a state machine's definition (module docstring) with the rehearsal's task runners."""

    def __init__(self, rh: Rehearsal, stack: Stack, logical: str, execution_input: dict) -> None:
        self.rh, self.stack = rh, stack
        props = resolved_properties(rh.assembly, stack, logical)
        definition = props.get("DefinitionString") or props.get("Definition")
        self.definition = json.loads(definition) if isinstance(definition, str) else definition
        self.role_arn = props["RoleArn"]
        self.arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:" + (
            props.get("StateMachineName") or rh.assembly.resolver.name(stack, logical))
        alphabet = string.ascii_lowercase + string.digits
        self.name = "rehearsal-" + "".join(secrets.choice(alphabet) for _ in range(12))
        self.start = dt.datetime.now(dt.timezone.utc)
        self.context = {"Execution": {"Name": self.name, "StartTime": self.start.strftime("%Y-%m-%dT%H:%M:%S.")
                                      + f"{self.start.microsecond // 1000:03d}Z", "Input": execution_input,
                                      "Id": f"{self.arn.replace(':stateMachine:', ':execution:')}:{self.name}"}}
        self.input = execution_input
        self.visited: list[str] = []
        self.models: dict[str, dict] = {}
        self.facts: dict[str, Any] = {}
        self.status, self.error, self.output = "RUNNING", None, None

    # JSONPath and intrinsics (the forms Step Functions accepts in Parameters)
    def _path(self, path: str, data: Any) -> Any:
        root, rest = (self.context, path[2:]) if path.startswith("$$") else (data, path[1:])
        node = root
        for part in [p for p in rest.split(".") if p]:
            if not isinstance(node, dict) or part not in node:
                raise _TaskError("States.Runtime", f"the JSONPath {path} could not be found in the input")
            node = node[part]
        return node

    def _value(self, expression: str, data: Any) -> Any:
        expression = expression.strip()
        if expression.startswith("$"):
            return self._path(expression, data)
        if expression.startswith("'") and expression.endswith("'"):
            return expression[1:-1]
        match = re.match(r"^(States\.\w+)\((.*)\)$", expression, re.S)
        if not match:
            raise _TaskError("States.Runtime", f"unsupported expression {expression!r}")
        args = [self._value(a, data) for a in _split_args(match.group(2))]
        if match.group(1) == "States.Array":
            return args
        if match.group(1) == "States.Format":
            template, values = args[0], args[1:]
            parts = template.split("{}")
            if len(parts) - 1 != len(values):
                raise _TaskError("States.Runtime", f"States.Format: {len(values)} values for {template!r}")
            out = parts[0]
            for value, part in zip(values, parts[1:]):
                out += (value if isinstance(value, str) else json.dumps(value)) + part
            return out
        raise _TaskError("States.Runtime", f"intrinsic {match.group(1)} is not rehearsed")

    def _parameters(self, template: Any, data: Any) -> Any:
        if isinstance(template, dict):
            out = {}
            for key, value in template.items():
                if key.endswith(".$"):
                    out[key[:-2]] = self._value(value, data)
                else:
                    out[key] = self._parameters(value, data)
            return out
        if isinstance(template, list):
            return [self._parameters(v, data) for v in template]
        return template

    @staticmethod
    def _result_path(data: Any, path: Any, result: Any) -> Any:
        if path is None:
            return data
        if path == "$":
            return result
        parts = path[2:].split(".")
        out = json.loads(json.dumps(data))
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = result
        return out

    # running
    def run(self, tasks: dict[str, Any], max_states: int = 50) -> "StateMachineRun":
        states = self.definition["States"]
        name, data = self.definition["StartAt"], self.input
        for _ in range(max_states):
            self.visited.append(name)
            state = states[name]
            kind = state["Type"]
            if kind == "Succeed":
                self.status, self.output = "SUCCEEDED", data
                return self
            if kind == "Fail":
                self.status = "FAILED"
                self.error = {"Error": state.get("Error"), "Cause": state.get("Cause"), "input": data}
                return self
            if kind == "Pass":
                data = self._result_path(data, state.get("ResultPath", "$"), state.get("Result", data))
            elif kind == "Choice":
                name = next((c["Next"] for c in state["Choices"] if self._choice(c, data)), state.get("Default"))
                if name is None:
                    self.status, self.error = "FAILED", {"Error": "States.NoChoiceMatched"}
                    return self
                continue
            elif kind == "Task":
                params = self._parameters(state.get("Parameters", {}), data)
                try:
                    result = tasks[state["Resource"]](name, params)
                    if "ResultSelector" in state:
                        result = self._parameters(state["ResultSelector"], result)
                    data = self._result_path(data, state.get("ResultPath", "$"), result)
                except _TaskError as error:
                    self.facts.setdefault("errors", []).append({"state": name, "error": error.kind,
                                                                "cause": error.cause})
                    catch = next((c for c in state.get("Catch", []) if "States.ALL" in c["ErrorEquals"]
                                  or error.kind in c["ErrorEquals"]), None)
                    if catch is None:
                        self.status, self.error = "FAILED", {"Error": error.kind, "Cause": error.cause}
                        return self
                    data = self._result_path(data, catch.get("ResultPath", "$"),
                                             {"Error": error.kind, "Cause": error.cause})
                    name = catch["Next"]
                    continue
            else:
                raise RehearsalError(f"{self.stack.name}: state {name} of type {kind} is not rehearsed")
            if state.get("End"):
                self.status, self.output = "SUCCEEDED", data
                return self
            name = state["Next"]
        raise RehearsalError(f"{self.stack.name}: the execution did not end within {max_states} states")

    def _choice(self, rule: dict, data: Any) -> bool:
        try:
            value = self._path(rule["Variable"], data)
        except _TaskError:
            return rule.get("IsPresent") is False
        for op, test in (("StringEquals", lambda v, t: v == t), ("BooleanEquals", lambda v, t: v is t),
                         ("NumericEquals", lambda v, t: v == t), ("IsPresent", lambda v, t: t is True)):
            if op in rule:
                return test(value, rule[op])
        raise RehearsalError(f"{self.stack.name}: choice rule {rule} is not rehearsed")


class _TaskError(Exception):
    def __init__(self, kind: str, cause: str) -> None:
        super().__init__(f"{kind}: {cause}")
        self.kind, self.cause = kind, cause


def _split_args(text: str) -> list[str]:
    args, depth, quoted, current = [], 0, False, ""
    for ch in text:
        if ch == "'" and not current.endswith("\\"):
            quoted = not quoted
        if not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            args.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        args.append(current)
    return args


def _batch_parts(rh: Rehearsal, model_stack: Stack) -> tuple[str, tuple[str, dict], dict]:
    machines = [k for k in model_stack.of_type("AWS::StepFunctions::StateMachine") if "Batch" in k]
    if not machines:
        raise RehearsalError(f"{model_stack.name}: no batch-inference state machine")
    plan = _function_of(rh, model_stack, PLAN_HANDLER)
    if plan is None:
        raise RehearsalError(f"{model_stack.name}: no batch plan function ({PLAN_HANDLER})")
    tables = {k: resolved_properties(rh.assembly, model_stack, k)
              for k in model_stack.of_type("AWS::Glue::Table") if "Predictions" in k}
    return machines[0], plan, tables


def has_batch(model_stack: Stack) -> bool:
    return bool([k for k in model_stack.of_type("AWS::StepFunctions::StateMachine") if "Batch" in k])


def batch_inference(rh: Rehearsal, model_stack: Stack, *, expect: str = "score",
                    execution_input: Optional[dict] = None, plan_only: bool = False) -> dict[str, Any]:
    """Stage 8 for one model stack (module docstring). ``expect``: the plan's action (``skip`` before any approval).
    ``plan_only``: stop after the Plan state (its result checked against ``expect``)."""
    from rehearsal.pipeline_definition import StepFailure

    machine_logical, (plan_logical, plan_res), tables = _batch_parts(rh, model_stack)
    plan_fn = _stand_in(rh, model_stack, plan_logical, plan_res)
    run = StateMachineRun(rh, model_stack, machine_logical, execution_input or {"trigger": "schedule"})
    where = f"{model_stack.name}/{machine_logical}"
    jobs = _BatchJobs(rh, run)

    def authorize(action: str, resource: str, state: str) -> None:
        try:
            _authorize(rh, run.role_arn, action, resource, f"{where} {state}")
        except RehearsalError as exc:
            raise _TaskError("SageMaker.AmazonSageMakerException" if action.startswith("sagemaker") else
                             "States.TaskFailed", str(exc)) from None

    def lambda_invoke(state: str, params: dict) -> dict:
        function = params["FunctionName"]
        authorize("lambda:InvokeFunction", function, state)
        if function not in (plan_fn.arn, plan_fn.name):
            raise _TaskError("Lambda.ResourceNotFoundException", f"{function} is not the plan function {plan_fn.arn}")
        invocation = plan_fn.run(params.get("Payload"))
        if not invocation.ok:
            error = invocation.result
            raise _TaskError(str(error.get("errorType")), str(error.get("errorMessage"))[:1500])
        run.facts["plan"] = invocation.result
        if plan_only:
            raise _StopAfterPlan(invocation.result)
        return {"Payload": invocation.result, "StatusCode": 200, "ExecutedVersion": "$LATEST"}

    def processing(state: str, params: dict) -> dict:
        name = params["ProcessingJobName"]
        job_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:processing-job/{name.lower()}"
        authorize("sagemaker:CreateProcessingJob", job_arn, state)
        authorize("sagemaker:DescribeProcessingJob", job_arn, state)
        if params.get("Tags"):
            authorize("sagemaker:AddTags", job_arn, state)
        authorize("iam:PassRole", params["RoleArn"], state)
        _sync_rule(authorize, "SageMakerProcessingJobsRule", state)
        try:
            jobs.run_processing(state, name, job_arn, params)
        except StepFailure as exc:
            raise _TaskError("States.TaskFailed", str(exc)) from None
        return {"ProcessingJobName": name, "ProcessingJobArn": job_arn, "ProcessingJobStatus": "Completed"}

    def create_model(state: str, params: dict) -> dict:
        name = params["ModelName"]
        model_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/{name.lower()}"
        authorize("sagemaker:CreateModel", model_arn, state)
        if params.get("Tags"):
            authorize("sagemaker:AddTags", model_arn, state)
        authorize("iam:PassRole", params["ExecutionRoleArn"], state)
        run.models[name] = params
        return {"ModelArn": model_arn}

    def delete_model(state: str, params: dict) -> dict:
        name = params["ModelName"]
        authorize("sagemaker:DeleteModel", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/{name.lower()}", state)
        if run.models.pop(name, None) is None:
            raise _TaskError("SageMaker.AmazonSageMakerException", f"Could not find model \"{name}\".")
        run.facts.setdefault("deleted_models", []).append(name)
        return {}

    def transform(state: str, params: dict) -> dict:
        name = params["TransformJobName"]
        job_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:transform-job/{name.lower()}"
        authorize("sagemaker:CreateTransformJob", job_arn, state)
        authorize("sagemaker:DescribeTransformJob", job_arn, state)
        if params.get("Tags"):
            authorize("sagemaker:AddTags", job_arn, state)
        _sync_rule(authorize, "SageMakerTransformJobsRule", state)
        model = run.models.get(params["ModelName"])
        if model is None:
            raise _TaskError("SageMaker.AmazonSageMakerException", f"Could not find model \"{params['ModelName']}\".")
        try:
            run.facts["transform"] = play_transform(rh, params, model, run.facts.get("plan", {}))
        except RehearsalError as exc:
            raise _TaskError("States.TaskFailed", f"{name}: {exc}") from None
        return {"TransformJobArn": job_arn}

    tasks = {
        "arn:aws:states:::lambda:invoke": lambda_invoke,
        "arn:aws:states:::sagemaker:createProcessingJob.sync": processing,
        "arn:aws:states:::sagemaker:createModel": create_model,
        "arn:aws:states:::sagemaker:createTransformJob.sync": transform,
        "arn:aws:states:::aws-sdk:sagemaker:deleteModel": delete_model,
    }
    try:
        run.run(tasks)
    except _StopAfterPlan as stop:
        plan = stop.plan
        if plan.get("action") != expect:
            raise RehearsalError(f"{where}: the plan's action is {plan.get('action')!r} ({plan.get('reason')}), "
                                 f"expected {expect!r}")
        return {"plan": {k: plan.get(k) for k in ("action", "reason", "partition", "run_id")}}
    plan = run.facts.get("plan") or {}
    facts: dict[str, Any] = {"execution": run.name, "states": run.visited, "status": run.status,
                             "plan": {k: plan.get(k) for k in ("action", "reason", "partition", "run_id")}}
    if run.status != "SUCCEEDED":
        raise RehearsalError(f"{where}: execution {run.name} {run.status} after {run.visited}: "
                             f"{json.dumps(run.facts.get('errors') or run.error)[:3000]}")
    if plan.get("action") != expect:
        raise RehearsalError(f"{where}: the plan's action is {plan.get('action')!r} ({plan.get('reason')}), "
                             f"expected {expect!r}")
    if expect == "skip":
        if run.visited[-1] != "NothingToScore":
            raise RehearsalError(f"{where}: a skipped run must end in NothingToScore, it ended in {run.visited[-1]}")
        return facts
    if run.models:
        raise RehearsalError(f"{where}: the run left model(s) {sorted(run.models)} behind (DeleteModel)")
    facts["transform"] = run.facts.get("transform")
    facts["predictions"] = check_predictions(rh, model_stack, plan, tables)
    return facts


class _StopAfterPlan(Exception):
    def __init__(self, plan: dict) -> None:
        super().__init__("plan only")
        self.plan = plan


def _sync_rule(authorize, rule: str, state: str) -> None:
    """A ``.sync`` integration has Step Functions put a managed rule for the job's completion events."""
    arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/StepFunctionsGetEventsFor{rule}"
    for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
        authorize(action, arn, state)


class _BatchJobs:
    """The state machine's processing jobs, run by :class:`rehearsal.pipeline_jobs.JobSteps` (a pipeline's runner)."""

    def __init__(self, rh: Rehearsal, run: StateMachineRun) -> None:
        from rehearsal.pipeline_jobs import JobSteps

        class Runner(JobSteps):
            def __init__(self, rh: Rehearsal, role_arn: str, execution_id: str) -> None:
                self.rh, self.cloud, self.role_arn, self.execution_id = rh, rh.cloud, role_arn, execution_id
                self.facts: dict[str, Any] = {}
                self.job: tuple[str, str] = ("", "")

            def _start_job(self, step: str, kind: str, job_role: str, args: dict) -> tuple[str, str]:
                return self.job  # authorized by the state machine's task (its role, not a pipeline's)

        self.runner = Runner(rh, run.role_arn, run.name)

    def run_processing(self, state: str, name: str, arn: str, params: dict) -> None:
        self.runner.job = (name, arn)
        self.runner._processing(state, params)


def _jsonpath_indexes(expression: str, length: int) -> list[int]:
    """The indexes a batch transform's ``$[...]`` filter selects from a CSV record of ``length`` fields."""
    match = re.fullmatch(r"\$\[(.*)\]", expression.strip())
    if not match:
        raise RehearsalError(f"filter {expression!r} is not rehearsed (only $[...] of CSV records)")
    selected = []
    for part in match.group(1).split(","):
        part = part.strip()
        if ":" in part:
            lo, _, hi = part.partition(":")
            selected += list(range(length))[slice(int(lo) if lo else None, int(hi) if hi else None)]
        else:
            index = int(part)
            selected.append(index if index >= 0 else length + index)
    return selected


def play_transform(rh: Rehearsal, params: dict, model: dict, plan: dict) -> dict[str, Any]:
    """SageMaker's batch transform of ``params`` (CreateTransformJob's request) with ``model`` (CreateModel's), see the
    module docstring. Returns counts."""
    from rehearsal.endpoint import EndpointStandIn

    role = model["ExecutionRoleArn"]
    container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
    package_arn = (plan.get("package") or {}).get("arn")
    if not package_arn:
        raise RehearsalError("the plan names no package")
    source = params["TransformInput"]["DataSource"]["S3DataSource"]
    if source.get("S3DataType", "S3Prefix") != "S3Prefix" or params["TransformInput"].get("SplitType") != "Line":
        raise RehearsalError("only S3Prefix inputs split by Line are rehearsed")
    processing = params.get("DataProcessing") or {}
    content_type = params["TransformInput"].get("ContentType", "text/csv")
    accept = params["TransformOutput"].get("Accept")
    limit = int(float(params.get("MaxPayloadInMB", 6)) * 1024 * 1024)
    multi = params.get("BatchStrategy", "MultiRecord") == "MultiRecord"
    s3 = rh.cloud.client("s3", role)  # the transform job reads and writes with the model's execution role
    in_bucket, in_prefix = split_s3_uri(source["S3Uri"])
    out_bucket, out_prefix = split_s3_uri(params["TransformOutput"]["S3OutputPath"])
    base = in_prefix[: in_prefix.rfind("/") + 1]
    keys = [k for k in _objects(s3, in_bucket, in_prefix) if not k.endswith("/")]
    if not keys:
        raise RehearsalError(f"ClientError: no input objects under {source['S3Uri']}")
    server = EndpointStandIn.from_package(rh, package_arn, role, endpoint_name=params["TransformJobName"],
                                          network_isolation=str(model.get("EnableNetworkIsolation")).lower() == "true",
                                          container=container)
    counts = {"objects": len(keys), "records": 0, "requests": 0}
    try:
        for key in keys:
            lines = [line for line in s3.get_object(Bucket=in_bucket, Key=key)["Body"].read().decode().splitlines()
                     if line.strip()]
            batches, current, size = [], [], 0
            for line in lines:
                if current and (not multi or size + len(line) + 1 > limit):
                    batches.append(current)
                    current, size = [], 0
                current.append(line)
                size += len(line) + 1
            if current:
                batches.append(current)
            out = []
            for batch in batches:
                records = [next(csv.reader([line])) for line in batch]
                sent = []
                for fields in records:
                    picked = (_jsonpath_indexes(processing["InputFilter"], len(fields))
                              if processing.get("InputFilter") else range(len(fields)))
                    sent.append(",".join(fields[i] for i in picked))
                response = server.invoke("\n".join(sent), content_type, accept)
                counts["requests"] += 1
                if response.status != 200:
                    raise RehearsalError(f"ClientError: the model answered {response.status} for {key}: "
                                         f"{response.text()[:500]}")
                answers = [a for a in response.text().splitlines() if a.strip()]
                if len(answers) != len(batch):
                    raise RehearsalError(f"ClientError: {len(batch)} records of {key} sent, {len(answers)} predictions "
                                         "returned (JoinSource needs one per record)")
                for fields, answer in zip(records, answers):
                    joined = (fields + next(csv.reader([answer]))) if processing.get("JoinSource") == "Input" else \
                        next(csv.reader([answer]))
                    picked = (_jsonpath_indexes(processing["OutputFilter"], len(joined))
                              if processing.get("OutputFilter") else range(len(joined)))
                    buffer = io.StringIO()
                    csv.writer(buffer, lineterminator="").writerow([joined[i] for i in picked])
                    out.append(buffer.getvalue())
                counts["records"] += len(batch)
            target = f"{out_prefix.rstrip('/')}/{key[len(base):]}.out" if out_prefix else f"{key[len(base):]}.out"
            s3.put_object(Bucket=out_bucket, Key=target, Body=("\n".join(out) + "\n").encode())
    finally:
        server.close()
    return counts


_GLUE_TYPES = {"string": ("string", "large_string"), "double": ("double",), "float": ("float",), "int": ("int32",),
               "bigint": ("int64",), "smallint": ("int16",), "tinyint": ("int8",), "boolean": ("bool",),
               "date": ("date32[day]", "date32"), "timestamp": ("timestamp[ms]", "timestamp[us]", "timestamp[ns]")}


def check_predictions(rh: Rehearsal, model_stack: Stack, plan: dict, tables: dict[str, dict]) -> dict[str, Any]:
    """Read the run's predictions as the Glue table declares them (module docstring)."""
    import pyarrow.parquet as pq

    predictions_uri = plan["s3"]["predictions"]
    bucket, prefix = split_s3_uri(predictions_uri)
    table = next((t for t in tables.values()
                  if predictions_uri.startswith(t["TableInput"]["StorageDescriptor"]["Location"].rstrip("/") + "/")),
                 None)
    if table is None:
        raise RehearsalError(f"{model_stack.name}: no Glue table's Location holds {predictions_uri}")
    name = table["TableInput"]["Name"]
    keys = [p["Name"] for p in table["TableInput"].get("PartitionKeys", [])]
    if keys != ["dt"] or f"/dt={plan['dt']}/" not in predictions_uri:
        raise RehearsalError(f"{model_stack.name}: table {name} is partitioned by {keys}, the predictions are written "
                             f"to {predictions_uri}")
    s3 = rh.cloud.admin("s3")
    objects = [k for k in _objects(s3, bucket, prefix) if k.endswith(".parquet")]
    if not objects:
        raise RehearsalError(f"{model_stack.name}: no Parquet under {predictions_uri}")
    declared = {c["Name"]: c["Type"] for c in table["TableInput"]["StorageDescriptor"]["Columns"]}
    rows = []
    for key in objects:
        data = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        problems = []
        for column, glue_type in declared.items():
            if column not in data.schema.names:
                problems.append(f"column {column} ({glue_type}) is not in the file")
            elif str(data.schema.field(column).type) not in _GLUE_TYPES.get(glue_type, (glue_type,)):
                problems.append(f"column {column} is {data.schema.field(column).type}, the table says {glue_type}")
        if problems:
            raise RehearsalError(f"{model_stack.name}: s3://{bucket}/{key} as table {name} reads it: "
                                 + "; ".join(problems))
        rows += data.to_pylist()
    curated = _curated_rows(s3, plan["s3"]["partition"])
    package = plan["package"]
    versions = {r.get("model_package_version") for r in rows}
    arns = {r.get("model_package_arn") for r in rows}
    if len(rows) != curated:
        raise RehearsalError(f"{model_stack.name}: {len(rows)} prediction rows for the {curated} curated rows of "
                             f"{plan['s3']['partition']}")
    if versions != {package["version"]} or arns != {package["arn"]}:
        raise RehearsalError(f"{model_stack.name}: the predictions name packages {arns} versions {versions}, the run "
                             f"scored {package['arn']}")
    scored = sum(1 for r in rows if r.get("prediction") is not None)
    return {"table": name, "uri": predictions_uri, "rows": len(rows), "scored": scored, "curated_rows": curated,
            "package_version": package["version"]}


def _curated_rows(s3: Any, uri: str) -> int:
    import pyarrow.parquet as pq

    bucket, prefix = split_s3_uri(uri)
    total = 0
    for key in _objects(s3, bucket, prefix):
        if key.endswith(".parquet"):
            total += pq.read_metadata(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())).num_rows
    return total


# --- the loop's stages ------------------------------------------------------------------------------------------------
def before_approval(rh: Rehearsal, report: Any, log: Any) -> None:
    """Stage 2b: each model's batch run before any approval ends in NothingToScore (no failure alarm every day)."""
    for stack in [s for n, s in rh.assembly.stacks.items() if "-model-" in n and has_batch(s)]:
        with report.stage(f"2b. {stack.name}: batch inference before any approval skips", log) as st:
            st.update(batch_inference(rh, stack, expect="skip"))


def after_deploy(rh: Rehearsal, report: Any, log: Any, *, serve: bool = True, run_execution: bool = True) -> None:
    """Stages 8 to 10 (module docstring), once every model is approved and (with ``serve``) deployed."""
    results = rh.facts.setdefault("closing_loop", {})
    for stack in [s for n, s in rh.assembly.stacks.items() if "-model-" in n and has_batch(s)]:
        with report.stage(f"8. {stack.name}: batch inference of the approved package", log) as st:
            st.update(batch_inference(rh, stack, expect="score"))
            results.setdefault("batch", {})[stack.name] = st.get("predictions")
    if not serve:
        return
    deployments = {d.stack.name: d for d in rh.facts.get("_deployments", [])}
    for name, stack in rh.assembly.stacks.items():
        if "-serving-" not in name:
            continue
        model, stage = name.split("-serving-", 1)[1].rsplit("-", 1)
        if name not in deployments:
            continue  # not deployed by the deploy CD: its parameters are unknown
        if _function_of(rh, stack, DRIFT_HANDLER) is not None:
            with report.stage(f"9. {name}: drift retrains once per cooldown", log) as st:
                st.update(drift_retrains_once(rh, model, stage, run_execution=run_execution))
                results.setdefault("drift", {})[name] = {k: st.get(k) for k in ("first", "second", "features",
                                                                                 "retrained_package")}
        if _function_of(rh, stack, GROUND_TRUTH_HANDLER) is not None:
            with report.stage(f"10. {name}: ground truth and model quality", log) as st:
                st.update(ground_truth_and_model_quality(rh, model, stage, deployments[name]))
                results.setdefault("ground_truth", {})[name] = {k: st.get(k) for k in ("counts", "joined", "sent",
                                                                                        "metric", "requests")}


def summary_lines(closing: dict[str, Any]) -> list[str]:
    """The "Closing the loop" section of ``summary.md``."""
    if not closing:
        return []
    lines = ["", "## Closing the loop", ""]
    for name, batch in (closing.get("batch") or {}).items():
        if batch:
            lines.append(f"- batch {name}: {batch.get('rows')} prediction rows of {batch.get('curated_rows')} curated "
                         f"rows, package version {batch.get('package_version')}, table {batch.get('table')}")
    for name, drift in (closing.get("drift") or {}).items():
        lines.append(f"- drift {name}: {drift.get('first')}, then {drift.get('second')} (drifted "
                     f"{drift.get('features')}; the started execution ran, registered: {drift.get('retrained_package')})")
    for name, truth in (closing.get("ground_truth") or {}).items():
        counts, metric = truth.get("counts") or {}, truth.get("metric") or {}
        lines.append(f"- ground truth {name}: {counts.get('written')} labels written, {counts.get('rejected')} "
                     f"rejected, {truth.get('joined')} of {truth.get('sent')} requests captured and joined "
                     f"({truth.get('requests')}), {metric.get('name')} {metric.get('value')}")
    return lines
