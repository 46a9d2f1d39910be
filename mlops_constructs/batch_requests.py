"""The batch inference state machine's definition: the plan, the SageMaker job requests and the model's cleanup.

:class:`~mlops_constructs.batch_inference.BatchInference` builds one :class:`BatchRequests` from its roles, function,
image and key, and gives :meth:`BatchRequests.definition` to Step Functions as the state machine's definition. Every
request is written here in full (encryption, network isolation, VPC, data processing), so the template shows each
field; the run's names and S3 locations come from the plan (``$.plan...``, see ``lambda_src/batch_resolve``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from aws_cdk import Aws, Duration
from aws_cdk import aws_s3_assets as s3_assets

from mlops_constructs.network import WorkloadPlacement

#: The transform's data processing: the key column never reaches the model, each output line is key,prediction.
INPUT_FILTER = "$[1:]"
OUTPUT_FILTER = "$[0,-1]"
CSV = "text/csv"
INSTANCE_RE = re.compile(r"^ml\.([a-z0-9]+)\.[a-z0-9]+$")
_LOCAL_STORAGE_FAMILY = re.compile(r"^[a-z]+\d+[a-z]*d[a-z]*$")  # m5d, c6id, r5dn, g4dn, p4d...
PROCESSING = "/opt/ml/processing"
LAMBDA_RETRY_ERRORS = ["Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                       "Lambda.TooManyRequestsException"]


def has_local_storage(instance_type: str) -> bool:
    """Instance types with local NVMe storage (``ml.m5d.large``, ``ml.g4dn.xlarge``...): SageMaker encrypts it in
    hardware and refuses a VolumeKmsKeyId for them."""
    match = INSTANCE_RE.match(instance_type)
    return bool(match and _LOCAL_STORAGE_FAMILY.match(match.group(1)))


@dataclass(frozen=True)
class BatchRequests:
    """What every request of a batch run shares, and the state machine definition built from it.

    :param name: the model's resource name (the definition's comment).
    :param plan_function_arn: the plan function the ``Plan`` state invokes.
    :param job_role_arn: the processing jobs' role (prepare and collect).
    :param model_role_arn: the model's execution role (the transform job).
    :param processing_image_uri: the image of prepare and collect.
    :param scoring_code: the prepare and collect script's asset (the jobs' ``code`` input and entry point).
    :param key_arn: the lake key: job volumes (except on local-storage instance types) and outputs.
    :param placement: the jobs' and the model's VPC placement; None: no VPC.
    :param tags: the jobs' and the model's tags (``[{"Key": ..., "Value": ...}]``); empty: no ``Tags``.
    """

    name: str
    plan_function_arn: str
    job_role_arn: str
    model_role_arn: str
    processing_image_uri: str
    scoring_code: s3_assets.Asset
    key_arn: str
    placement: Optional[WorkloadPlacement]
    tags: Sequence[Mapping[str, str]]

    def network(self) -> dict[str, Any]:
        """``VpcConfig`` of a job or the model (empty without a VPC)."""
        return {"VpcConfig": self.placement.vpc_config()} if self.placement else {}

    def processing_job(self, step: str, arguments: str, inputs: list[dict], outputs: list[dict],
                       instance_type: str, max_runtime: Duration) -> dict[str, Any]:
        """``CreateProcessingJob`` of ``step`` (prepare or collect): the script, then ``inputs``; ``arguments`` is
        an intrinsic-function expression of the container arguments."""
        script = f"{PROCESSING}/input/code/{Path(self.scoring_code.s3_object_key).name}"
        cluster: dict[str, Any] = {"InstanceCount": 1, "InstanceType": instance_type, "VolumeSizeInGB": 30}
        if not has_local_storage(instance_type):
            cluster["VolumeKmsKeyId"] = self.key_arn
        code_input = {"InputName": "code", "S3Input": {
            "S3Uri": self.scoring_code.s3_object_url, "LocalPath": f"{PROCESSING}/input/code",
            "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}
        request = {
            "ProcessingJobName.$": f"$.plan.jobs.{step}",
            "RoleArn": self.job_role_arn,
            "AppSpecification": {
                "ImageUri": self.processing_image_uri,
                "ContainerEntrypoint": ["python3", script],
                "ContainerArguments.$": arguments,
            },
            "ProcessingInputs": [code_input, *inputs],
            "ProcessingOutputConfig": {"KmsKeyId": self.key_arn, "Outputs": outputs},
            "ProcessingResources": {"ClusterConfig": cluster},
            "StoppingCondition": {"MaxRuntimeInSeconds": int(max_runtime.to_seconds())},
            "NetworkConfig": {"EnableNetworkIsolation": True, "EnableInterContainerTrafficEncryption": True,
                              **self.network()},
        }
        if self.tags:
            request["Tags"] = self.tags
        return request

    @staticmethod
    def input(name: str, uri_path: str, local: str) -> dict[str, Any]:
        """A processing input: the S3 prefix at ``uri_path`` of the execution's state, downloaded to ``local``."""
        return {"InputName": name, "S3Input": {
            "S3Uri.$": uri_path, "LocalPath": local, "S3DataType": "S3Prefix", "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated"}}

    @staticmethod
    def output(name: str, uri_path: str, local: str) -> dict[str, Any]:
        """A processing output: ``local`` uploaded at the job's end to the S3 URI at ``uri_path`` of the state."""
        return {"OutputName": name, "S3Output": {"S3Uri.$": uri_path, "LocalPath": local,
                                                 "S3UploadMode": "EndOfJob"}}

    def definition(self, *, instance_type: str, instance_count: int, max_payload_mb: int,
                   processing_instance_type: str, max_reject_ratio: float,
                   job_max_runtime: Duration) -> dict[str, Any]:
        """The state machine (Amazon States Language): Plan, then Prepare, CreateModel, Transform, DeleteModel and
        Collect, or NothingToScore; a failed transform still deletes the model (see the batch_inference module).

        :param instance_type / instance_count / max_payload_mb: of the transform job.
        :param processing_instance_type: of prepare and collect. :param max_reject_ratio: prepare's limit.
        :param job_max_runtime: of each processing job.
        """
        key = self.key_arn
        prepare = self.processing_job(
            "prepare",
            "States.Array('prepare', '--partition', $.plan.partition, '--max-reject-ratio', "
            f"'{max_reject_ratio}')",
            [self.input("data", "$.plan.s3.partition", f"{PROCESSING}/input/data"),
             self.input("model", "$.plan.s3.model_data", f"{PROCESSING}/input/model")],
            [self.output("transform", "$.plan.s3.transform_input", f"{PROCESSING}/transform"),
             self.output("rows", "$.plan.s3.rows", f"{PROCESSING}/rows"),
             self.output("report", "$.plan.s3.report", f"{PROCESSING}/report")],
            processing_instance_type, job_max_runtime,
        )
        collect = self.processing_job(
            "collect",
            "States.Array('collect', '--partition', $.plan.partition, '--dt', $.plan.dt, '--run-id', $.plan.run_id, "
            "'--model-package-arn', $.plan.package.arn, '--model-package-version', "
            "States.Format('{}', $.plan.package.version))",
            [self.input("rows", "$.plan.s3.rows", f"{PROCESSING}/input/rows"),
             self.input("transform", "$.plan.s3.transform_output", f"{PROCESSING}/input/transform")],
            [self.output("predictions", "$.plan.s3.predictions", f"{PROCESSING}/predictions"),
             self.output("report", "$.plan.s3.report", f"{PROCESSING}/report")],
            processing_instance_type, job_max_runtime,
        )
        model: dict[str, Any] = {
            "ModelName.$": "$.plan.jobs.model",
            "ExecutionRoleArn": self.model_role_arn,
            "PrimaryContainer": {
                "Image.$": "$.plan.package.image",
                "ModelDataUrl.$": "$.plan.package.model_data_url",
                "Environment.$": "$.plan.package.environment",
            },
            "EnableNetworkIsolation": True,
            **self.network(),
        }
        resources: dict[str, Any] = {"InstanceType": instance_type, "InstanceCount": instance_count}
        if not has_local_storage(instance_type):
            resources["VolumeKmsKeyId"] = key
        transform: dict[str, Any] = {
            "TransformJobName.$": "$.plan.jobs.transform",
            "ModelName.$": "$.plan.jobs.model",
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": max_payload_mb,
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri.$": "$.plan.s3.transform_input"}},
                "ContentType": CSV,
                "SplitType": "Line",
                "CompressionType": "None",
            },
            "TransformOutput": {
                "S3OutputPath.$": "$.plan.s3.transform_output",
                "Accept": CSV,
                "AssembleWith": "Line",
                "KmsKeyId": key,
            },
            "TransformResources": resources,
            "DataProcessing": {"InputFilter": INPUT_FILTER, "JoinSource": "Input", "OutputFilter": OUTPUT_FILTER},
        }
        if self.tags:
            model["Tags"] = self.tags
            transform["Tags"] = self.tags
        catch_all = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}]
        processing_sync = f"arn:{Aws.PARTITION}:states:::sagemaker:createProcessingJob.sync"
        delete_model = {"Type": "Task", "Resource": f"arn:{Aws.PARTITION}:states:::aws-sdk:sagemaker:deleteModel",
                        "Parameters": {"ModelName.$": "$.plan.jobs.model"}, "ResultPath": None,
                        "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 5, "MaxAttempts": 3,
                                   "BackoffRate": 2}]}
        return {
            "Comment": f"Batch inference of {self.name}: plan, prepare, transform, collect",
            "StartAt": "Plan",
            "States": {
                "Plan": {
                    "Type": "Task",
                    "Resource": f"arn:{Aws.PARTITION}:states:::lambda:invoke",
                    "Parameters": {
                        "FunctionName": self.plan_function_arn,
                        "Payload": {"execution_name.$": "$$.Execution.Name",
                                    "start_time.$": "$$.Execution.StartTime", "input.$": "$"},
                    },
                    "ResultSelector": {"plan.$": "$.Payload"},
                    "ResultPath": "$",
                    "Retry": [{"ErrorEquals": LAMBDA_RETRY_ERRORS, "IntervalSeconds": 2, "MaxAttempts": 3,
                               "BackoffRate": 2}],
                    "Catch": catch_all,
                    "Next": "ShouldScore",
                },
                "ShouldScore": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.plan.action", "StringEquals": "score", "Next": "Prepare"}],
                    "Default": "NothingToScore",
                },
                "NothingToScore": {"Type": "Succeed", "Comment": "No approved package or no curated partition yet"},
                "Prepare": {"Type": "Task", "Resource": processing_sync, "Parameters": prepare, "ResultPath": None,
                            "Catch": catch_all, "Next": "CreateModel"},
                "CreateModel": {"Type": "Task", "Resource": f"arn:{Aws.PARTITION}:states:::sagemaker:createModel",
                                "Parameters": model, "ResultPath": None, "Catch": catch_all, "Next": "Transform"},
                "Transform": {
                    "Type": "Task", "Resource": f"arn:{Aws.PARTITION}:states:::sagemaker:createTransformJob.sync",
                    "Parameters": transform, "ResultPath": None,
                    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                               "Next": "DeleteModelAfterFailure"}],
                    "Next": "DeleteModel",
                },
                "DeleteModel": {**delete_model, "Next": "Collect"},
                # The transform's error stays in $.error; a failed cleanup is recorded next to it.
                "DeleteModelAfterFailure": {**delete_model, "Catch": [{"ErrorEquals": ["States.ALL"],
                                                                       "ResultPath": "$.cleanup_error",
                                                                       "Next": "Failed"}], "Next": "Failed"},
                "Collect": {"Type": "Task", "Resource": processing_sync, "Parameters": collect, "ResultPath": None,
                            "Catch": catch_all, "Next": "Scored"},
                "Scored": {"Type": "Succeed"},
                "Failed": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
            },
        }
