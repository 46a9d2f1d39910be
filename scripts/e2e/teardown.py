"""Teardown of an e2e run: stop what runs, destroy the stacks, remove what they retain (``--teardown all``)."""

from __future__ import annotations

import uuid
from typing import Any, Callable, Optional

from botocore.exceptions import ClientError

from cicd_scripts._common import error_code, error_message
from scripts.e2e.common import GLUE_FAILED, KMS_MIN_PENDING_DAYS, E2EError, gone


class Teardown:
    """The teardown of :class:`scripts.e2e.run.E2ERun` (a mixin: the run holds the state)."""

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
                         missing=gone("ResourceNotFoundException"))
        for r in by_type.get("AWS::SageMaker::ModelPackageGroup", []):
            self._remove("model package group", r["id"], lambda r=r: self.delete_package_group(r["id"]),
                         missing=gone("ResourceNotFound", "ValidationException", message="does not exist"))
        for r in by_type.get("AWS::KMS::Key", []):
            self._remove("KMS key", r["id"], lambda r=r: self.schedule_key_deletion(r["id"]),
                         missing=gone("NotFoundException"))
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

