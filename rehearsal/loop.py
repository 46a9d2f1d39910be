"""The whole loop, rehearsed from a synthesized assembly: what `make rehearse` runs.

1. Stand-in account: moto on 127.0.0.1 with IAM authorization on; the stacks that `cdk deploy --all` creates
   (everything but the serving stacks) "deployed": buckets, roles with the templates' policies, groups, topics.
2. Glue, per dataset: its sample (``data/<dataset>.csv``) uploaded to its raw prefix; its ETL job run as Glue runs
   it (rehearsal.glue), the declared catalog table checked against what it wrote, then its crawler if it has one.
3. Trigger, per model: the Glue "job succeeded" events matched against the model stack's EventBridge rules: exactly
   one dataset's job must start the model's pipeline, with that job's curated prefix as ``InputDataUrl``.
4. Model build: the pipeline executed from its synthesized definition (rehearsal.pipeline) under its role; a model
   package registered (PendingManualApproval).
5. Approval, as a reviewer would; the deploy CD's Resolve build (rehearsal.codebuild) under its role.
6. Deploy: the Deploy-<stage> build runs `cdk deploy` of the serving stack through the CLI stand-in, which checks
   the stack selection and parameters; the rehearsal deploys that stack's resources and serves it
   (rehearsal.serving: the endpoint as the framework container's inference toolkit serves the package, the Lambda
   from its zips on Python 3.12, a Function URL), then the Smoke-<stage> build calls them under the smoke role.
7. New data: a second upload per dataset, its ETL, and every model's execution must retrain (no cache hit).
8.-10. Closing the loop (rehearsal.closing_loop): batch inference (its plan skips before any approval: 2b), drift
   retrains once per cooldown, ground truth joins the captured inferences for model quality.
Every stage's time and findings, and each model's metric as its condition step compared it, go to
``<report dir>/rehearsal.json`` and ``summary.md``.
"""

from __future__ import annotations

import json
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from rehearsal.assembly import Assembly, RehearsalError, Stack
from rehearsal.cloud import DENIALS, Cloud
from rehearsal.context import Rehearsal, tmpdir

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Report:
    stages: list[dict[str, Any]] = field(default_factory=list)
    ok: bool = True
    error: Optional[str] = None
    facts: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, log: Callable[[str], None]) -> Iterator[dict]:
        entry: dict[str, Any] = {"stage": name, "status": "running"}
        self.stages.append(entry)
        log(f"== {name}")
        started = time.monotonic()
        try:
            yield entry
            entry["status"] = "ok"
        except Exception as exc:
            entry["status"] = "failed"
            entry["error"] = str(exc)
            self.ok = False
            self.error = f"{name}: {exc}"
            raise
        finally:
            entry["seconds"] = round(time.monotonic() - started, 1)
            log(f"   {entry['status']} in {entry['seconds']} s")


def pipeline_trigger_parameters(rh: Rehearsal, model_stack: Stack, job_name: str) -> dict[str, str]:
    """The parameters the model stack's EventBridge rule passes when the Glue job ``job_name`` succeeds.

    The rule must match the event Glue sends ("Glue Job State Change", detail.jobName, detail.state SUCCEEDED) and
    target this stack's pipeline; a rule on another job name (a rename in one place) fails here, as it would
    silently never fire in AWS."""
    event = {"source": "aws.glue", "detail-type": "Glue Job State Change",
             "detail": {"jobName": job_name, "state": "SUCCEEDED"}}
    resolver = rh.assembly.resolver
    pipelines = {resolver.get_att(model_stack, k, "Arn") for k in model_stack.of_type("AWS::SageMaker::Pipeline")}
    found = []
    for logical, res in model_stack.of_type("AWS::Events::Rule").items():
        props = resolver.resolve(model_stack, res["Properties"])
        pattern = props.get("EventPattern")
        if not pattern or "aws.glue" not in json.dumps(pattern):
            continue
        if not _matches(pattern, event):
            continue
        for target in props.get("Targets", []):
            if target.get("Arn") in pipelines and "SageMakerPipelineParameters" in target:
                found.append({p["Name"]: p["Value"] for p in target["SageMakerPipelineParameters"]["PipelineParameterList"]})
    if not found:
        raise RehearsalError(
            f"{model_stack.name}: no EventBridge rule starts the pipeline when Glue job {job_name} succeeds "
            "(the rule's jobName and the data stack's job name disagree, or the target has no parameters)"
        )
    return found[0]


def _matches(pattern: Any, event: Any) -> bool:
    """EventBridge pattern matching for the forms the platform uses (values, prefix, anything-but, nesting)."""
    if isinstance(pattern, dict):
        if not isinstance(event, dict):
            return False
        return all(key in event and _matches(value, event[key]) for key, value in pattern.items())
    if isinstance(pattern, list):
        for option in pattern:
            if isinstance(option, dict):
                if "prefix" in option and isinstance(event, str) and event.startswith(option["prefix"]):
                    return True
                if "anything-but" in option and event not in _as_list(option["anything-but"]):
                    return True
            elif option == event:
                return True
        return False
    return pattern == event


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def rehearse(
    cdk_out: Path,
    *,
    report_dir: Optional[Path] = None,
    workdir: Optional[Path] = None,
    sample_rows: Optional[int] = None,
    second_pass: bool = True,
    serve: bool = True,
    log: Callable[[str], None] = print,
) -> Report:
    """Run the loop (see the module docstring); raises nothing: the report says what failed."""
    report = Report()
    assembly = Assembly(cdk_out)
    workdir = workdir or tmpdir("loop")
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with Cloud(assembly) as cloud:
            rh = Rehearsal(assembly, cloud, workdir, log=lambda m: log(f"   {m}"))
            try:
                _run(rh, report, sample_rows=sample_rows, second_pass=second_pass, serve=serve, log=log)
            except Exception as exc:  # noqa: BLE001 (recorded in the report)
                if report.ok:
                    report.ok = False
                    report.error = str(exc)
            finally:
                for deployment in rh.facts.pop("_deployments", []):
                    deployment.close()
                report.facts = rh.facts
                report.facts["access_denied"] = [str(d) for d in DENIALS]
    except RehearsalError as exc:
        report.ok = False
        report.error = str(exc)
    if report_dir:
        write_report(report, report_dir)
    return report


def _sample(rows: Optional[int], workdir: Path, dataset: str, offset: int = 0) -> dict[str, Path]:
    """``data/<dataset>.csv`` (the sample named by the dataset), or ``rows`` of it from ``offset`` in a new file."""
    source = REPO / "data" / f"{dataset}.csv"
    if not source.exists():
        raise RehearsalError(f"no sample data for dataset {dataset!r}: {source} is missing")
    if rows is None and offset == 0:
        return {f"{dataset}.csv": source}
    lines = source.read_text().splitlines()
    header, body = lines[0], lines[1:]
    offset = min(offset, len(body) // 2)  # new data from a small sample too
    chosen = body[offset: offset + rows] if rows else body[offset:]
    target = workdir / f"{dataset}-{offset}.csv"
    target.write_text("\n".join([header, *chosen]) + "\n")
    return {target.name: target}


def model_trigger(rh: Rehearsal, model_stack: Stack, jobs: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(dataset, pipeline parameters) of the one Glue job whose success starts the model's pipeline. The pipeline
    must read what that job writes: an ``InputDataUrl`` other than the job's ``--curated_path`` is an error."""
    found = {}
    for dataset, job in jobs.items():
        try:
            found[dataset] = pipeline_trigger_parameters(rh, model_stack, job.name)
        except RehearsalError:
            continue
    if len(found) != 1:
        names = ", ".join(j.name for j in jobs.values())
        raise RehearsalError(
            f"{model_stack.name}: the pipeline starts on the success of {len(found)} of the Glue jobs ({names}), "
            f"not exactly one: " + ("none of the EventBridge rules matches their names" if not found else
                                    f"the jobs of {', '.join(found)}")
        )
    (dataset, params), = found.items()
    curated = jobs[dataset].arguments.get("--curated_path")
    if "InputDataUrl" in params and params["InputDataUrl"] != curated:
        raise RehearsalError(f"{model_stack.name}: the rule on {jobs[dataset].name} passes InputDataUrl "
                             f"{params['InputDataUrl']}, but the job writes {curated}")
    return dataset, params


def _etl(rh: Rehearsal, report: Report, jobs: dict[str, Any], rows: Optional[int], log, offset: int = 0) -> None:
    from rehearsal import glue

    for dataset, job in jobs.items():
        title = (f"2. Glue ETL of {dataset} ({job.name}), as Glue runs it" if not offset
                 else f"7. new data: Glue ETL of {dataset} again")
        with report.stage(title, log) as st:
            summary = glue.run_glue_job(rh, raw_files=_sample(rows, rh.workdir, dataset, offset), dataset=dataset)
            counts = summary["etl_counts"]
            st["etl"] = {k: counts.get(k) for k in ("rows_in", "rows_curated", "rows_rejected")}
            st["table"] = summary["table"]["table"]
            if summary.get("crawler"):
                st["crawler"] = summary["crawler"]


def _metric(run: Any) -> dict[str, Any]:
    """The model's metric as the pipeline's condition step compared it."""
    for name, info in run.steps.items():
        if "metric" in info:
            out = info.get("outputs") or {}
            return {"name": out.get("metric_path"), "value": info["metric"], "comparison": out.get("comparison"),
                    "threshold": out.get("right"), "step": name}
    return {"value": run.metric}


def _model(rh: Rehearsal, report: Report, model_stack: Stack, jobs: dict[str, Any], cache, serve: bool, log) -> tuple:
    """Stages 3 to 6 of one model: trigger, execution, approval and Resolve, then each stage deployed and smoked."""
    from rehearsal import codebuild, pipeline

    with report.stage(f"3. {model_stack.name}: Glue success starts the pipeline", log) as st:
        dataset, params = model_trigger(rh, model_stack, jobs)
        st["dataset"], st["parameters"] = dataset, params
    with report.stage(f"4. {model_stack.name}: pipeline execution", log) as st:
        run = pipeline.run_pipeline(rh, model_stack, params, cache).check()
        st["package"] = run.model_package_arn
        st["metric"] = run.metric
        rh.facts.setdefault("models", {})[model_stack.name.split("-model-", 1)[1]] = {
            "dataset": dataset, "metric": _metric(run), "package": run.model_package_arn}
    with report.stage(f"5. {model_stack.name}: approve, then the deploy CD resolves it", log) as st:
        rh.cloud.admin("sagemaker").update_model_package(
            ModelPackageArn=run.model_package_arn, ModelApprovalStatus="Approved"
        )
        variables: dict[str, dict[str, str]] = {}
        resolved = codebuild.run_action(rh, model_stack, "Resolve", variables=variables).check()
        if resolved.exported.get("MODEL_PACKAGE_ARN") != run.model_package_arn:
            raise RehearsalError(
                f"Resolve exported {resolved.exported.get('MODEL_PACKAGE_ARN')}, not the approved "
                f"{run.model_package_arn}"
            )
        st["exported"] = resolved.exported
    if serve:
        with report.stage(f"5b. {model_stack.name}: manual approvals notify a topic", log) as st:
            st["topics"] = check_manual_approvals(rh, model_stack)
        for stage_name in _deploy_stages(model_stack):
            with report.stage(f"6. {model_stack.name}: deploy and smoke-test {stage_name}", log) as st:
                st.update(deploy_and_smoke(rh, model_stack, stage_name, variables))
    return dataset, run, params


def _run(rh: Rehearsal, report: Report, *, sample_rows, second_pass, serve, log) -> None:
    from rehearsal import closing_loop, glue, pipeline

    assembly, cloud = rh.assembly, rh.cloud
    core = [s for n, s in assembly.stacks.items() if "-serving-" not in n and not n.endswith("-pipeline")]
    with report.stage("1. stand-in account: deploy the stacks of `cdk deploy --all`", log) as st:
        cloud.deploy(core)
        st["stacks"] = [s.name for s in core]
        st["roles"] = len(cloud.roles)

    jobs = glue.read_jobs(rh)
    _etl(rh, report, jobs, sample_rows, log)
    closing_loop.before_approval(rh, report, log)
    cache = pipeline.PipelineCache()
    runs = {}
    for model_stack in [s for n, s in assembly.stacks.items() if "-model-" in n]:
        runs[model_stack.name] = _model(rh, report, model_stack, jobs, cache, serve, log)

    if second_pass:
        trained = {dataset: jobs[dataset] for dataset, _, _ in runs.values()}
        _etl(rh, report, trained, sample_rows or 400, log, offset=1000)
        with report.stage("7. new data: every model retrains", log) as st:
            for name, (dataset, first, params) in runs.items():
                second = pipeline.run_pipeline(rh, assembly.stacks[name], params, cache).check()
                pipeline.check_new_data_retrains(first, second)
                st[name] = second.model_package_arn
    closing_loop.after_deploy(rh, report, log, serve=serve)


def deploy_and_smoke(rh: Rehearsal, model_stack: Stack, stage: str, variables: dict[str, dict[str, str]]) -> dict:
    """The deploy CD's Deploy-<stage> and Smoke-<stage> builds, with the serving stack deployed in between.

    The Deploy build's ``cdk deploy`` (CLI stand-in) checks the stack selection and parameters and records the
    request; the rehearsal then deploys the serving stack with exactly those parameters (rehearsal.serving) and
    registers the stack, endpoint and function in the stand-in account so the Smoke build's AWS calls find them.
    The Smoke build runs under the smoke role against the endpoint stand-in (``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``)
    and the local Function URL server: the deployed URL's host is mapped to that server, as DNS maps it to Lambda.
    """
    from rehearsal import codebuild, serving

    model = model_stack.name.split("-model-", 1)[1]
    deploy = codebuild.run_action(rh, model_stack, f"Deploy-{stage}", variables=variables).check()
    if len(deploy.deploy_requests) != 1:
        raise RehearsalError(f"Deploy-{stage} made {len(deploy.deploy_requests)} cdk deploy calls, expected one")
    request = deploy.deploy_requests[0]
    deployment = serving.deploy_serving(rh, model, stage, request["parameters"])
    rh.facts.setdefault("_deployments", []).append(deployment)
    admin_cfn = rh.cloud.admin("cloudformation")
    with warnings.catch_warnings():  # moto does not model the placeholder resource; the stack is all the smoke needs
        warnings.simplefilter("ignore")
        admin_cfn.create_stack(
            StackName=request["stack"],
            TemplateBody=json.dumps({"Resources": {"Rehearsal": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}),
        )
    extra_env: dict[str, str] = {}
    targets_path = deploy.workdir / "smoke-targets.json"
    targets = json.loads(targets_path.read_text())
    if deployment.endpoint is not None:
        sm = rh.cloud.admin("sagemaker")
        name = deployment.endpoint.name
        sm.create_model(ModelName=f"{name}-rehearsal", ExecutionRoleArn=deployment.endpoint.role_arn,
                        PrimaryContainer={"ModelPackageName": deployment.endpoint.package_arn})
        sm.create_endpoint_config(EndpointConfigName=f"{name}-rehearsal", ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": f"{name}-rehearsal", "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.large"}])
        sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-rehearsal")
        extra_env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = deployment.endpoint.serve()
    if targets.get("endpoint_name") and deployment.endpoint is None:
        raise RehearsalError(f"{request['stack']}: the outputs name endpoint {targets['endpoint_name']}, which the "
                             "stack does not serve")
    if targets.get("function_url"):
        if not deployment.function_url:
            raise RehearsalError(f"{request['stack']}: the outputs name a Function URL the stack does not serve")
        targets["function_url"] = deployment.function_url  # the DNS stand-in
    smoke_input = rh.scratch(f"deploy-{stage}-output")
    (smoke_input / "smoke-targets.json").write_text(json.dumps(targets))
    smoke = codebuild.run_action(
        rh, model_stack, f"Smoke-{stage}", variables=variables, secondary={"DeployOutput": smoke_input},
        extra_env=extra_env,
    ).check()
    result = {"stack": request["stack"], "parameters": request["parameters"], "smoke": "passed",
              "endpoint": deployment.endpoint.name if deployment.endpoint else None,
              "function": deployment.function.name if deployment.function else None}
    if deployment.endpoint is not None and deployment.endpoint.data_capture:
        endpoint = deployment.endpoint
        if not endpoint.captured_records():
            # Sampling below 100% may have captured none of the smoke test's requests: send rows of the baseline's
            # width until one is captured (the sampler is deterministic), so capture itself is still exercised.
            width = len(endpoint.baseline_constraints().get("features") or []) or 1
            for _ in range(100):
                endpoint.invoke(",".join(["0"] * width), "text/csv")
                if endpoint.captured_records():
                    break
        endpoint.check_capture()
        result["data_capture"] = "matches the package's baseline"
    rh.log(smoke.output.strip().splitlines()[-1] if smoke.output.strip() else "smoke test passed")
    return result


def check_manual_approvals(rh: Rehearsal, model_stack: Stack) -> list[str]:
    """Each manual approval of the deploy pipeline notifies someone: its ``NotificationArn`` is a topic of the
    platform and the pipeline's role may publish to it (and use the topic's key), as CodePipeline does when the
    approval starts. Returns the topics."""
    from rehearsal.cloud import _policy_documents_of_role, evaluate

    resolver = rh.assembly.resolver
    topics = []
    for logical, res in model_stack.of_type("AWS::CodePipeline::Pipeline").items():
        props = resolver.resolve(model_stack, res["Properties"])
        for stage in props["Stages"]:
            for action in stage["Actions"]:
                if action["ActionTypeId"]["Category"] != "Approval":
                    continue
                where = f"{model_stack.name}/{logical} {stage['Name']}/{action['Name']}"
                topic = (action.get("Configuration") or {}).get("NotificationArn")
                if not topic:
                    raise RehearsalError(f"{where}: the manual approval has no NotificationArn: nobody is told "
                                         "that a deployment waits for them")
                policies = _policy_documents_of_role(rh.cloud, props["RoleArn"])
                if not evaluate(policies, "sns:Publish", [[topic]]):
                    raise RehearsalError(f"{where}: the pipeline role may not sns:Publish to {topic}")
                if not evaluate(policies, "kms:GenerateDataKey", None):
                    raise RehearsalError(f"{where}: the pipeline role may not use the key of the encrypted topic {topic}")
                topics.append(topic)
    return topics


def _deploy_stages(model_stack: Stack) -> list[str]:
    """The stages of the model's deploy pipeline with a Deploy-<stage> CodeBuild action, in order."""
    out = []
    for res in model_stack.of_type("AWS::CodePipeline::Pipeline").values():
        for stage in res["Properties"]["Stages"]:
            if stage["Name"].startswith("Deploy-"):
                out.append(stage["Name"][len("Deploy-"):])
    return out


def write_report(report: Report, report_dir: Path) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    doc = {"ok": report.ok, "error": report.error, "stages": report.stages, "facts": report.facts}
    (report_dir / "rehearsal.json").write_text(json.dumps(doc, indent=2, default=str))
    lines = ["# Rehearsal of the deployed platform", "", f"Result: **{'passed' if report.ok else 'FAILED'}**", ""]
    if report.error:
        lines += ["```", report.error, "```", ""]
    lines += ["| stage | status | seconds |", "|---|---|---|"]
    lines += [f"| {s['stage']} | {s['status']} | {s.get('seconds', '')} |" for s in report.stages]
    models = report.facts.get("models") or {}
    if models:
        lines += ["", "## Models", "", "| model | dataset | metric | value | condition | package |", "|---|---|---|---|---|---|"]
        for model, info in models.items():
            m = info["metric"]
            value = f"{m['value']:.4f}" if isinstance(m.get("value"), (int, float)) else m.get("value")
            lines.append(f"| {model} | {info['dataset']} | {m.get('name')} | {value} | "
                         f"{m.get('comparison')} {m.get('threshold')} | {info['package']} |")
    from rehearsal.closing_loop import summary_lines

    lines += summary_lines(report.facts.get("closing_loop") or {})
    denied = report.facts.get("access_denied") or []
    if denied:
        lines += ["", "## AccessDenied", ""] + [f"- {d}" for d in denied]
    (report_dir / "summary.md").write_text("\n".join(lines) + "\n")
