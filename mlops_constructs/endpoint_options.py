"""Options and checks of :class:`~mlops_constructs.realtime_endpoint.RealtimeEndpoint`: traffic routing,
autoscaling, serverless capacity, data capture, SageMaker's limits and the validation of the endpoint's props."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from aws_cdk import Duration, Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker

from mlops_constructs import compliance
from mlops_constructs.network import WorkloadPlacement

VARIANT_NAME = "AllTraffic"
SERVERLESS_MEMORY_SIZES = (1024, 2048, 3072, 4096, 5120, 6144)
# SageMaker's first-party framework images (XGBoost, scikit-learn) live in per-region AWS-owned ECR accounts.
DEFAULT_IMAGE_REPOSITORIES = ("sagemaker-xgboost", "sagemaker-scikit-learn")
SAGEMAKER_NAMESPACE = "AWS/SageMaker"
INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"
# SageMaker's limits for a blue/green update (CreateEndpoint/UpdateEndpoint DeploymentConfig).
MAX_WAIT_SECONDS = 3600
MIN_EXECUTION_TIMEOUT_SECONDS = 600
MAX_EXECUTION_TIMEOUT_SECONDS = 14400
# Headroom for provisioning the green fleet and the container health checks, on top of the bake times.
PROVISIONING_HEADROOM_SECONDS = 1800
# Instance families with local NVMe storage (m5d, c6id, g4dn, p4d, ...): SageMaker refuses a KmsKeyId for them.
_LOCAL_STORAGE_RE = re.compile(r"^ml\.[a-z]+\d+[a-z]*d[a-z]*\.")

ServerlessCapacity = Tuple[int, int]
"""(memory_mb, max_concurrency) of a serverless variant."""


@dataclass(frozen=True)
class TrafficRouting:
    """How a blue/green update shifts traffic to the new fleet (SageMaker deployment guardrails).

    Use the factories: :meth:`canary`, :meth:`linear`, :meth:`all_at_once`. ``wait`` is the baking period after each
    shift, during which the rollback alarms are watched.
    """

    type: str
    wait: Duration
    size_percent: Optional[int] = None

    @classmethod
    def canary(cls, percent: int = 10, wait: Duration = Duration.minutes(10)) -> "TrafficRouting":
        """``percent`` of the new fleet's capacity takes traffic first, the rest after ``wait``. At most 50%."""
        if not 1 <= percent <= 50:
            raise ValueError(f"TrafficRouting.canary percent must be within [1, 50] (SageMaker), got {percent}")
        return cls("CANARY", _check_wait(wait), percent)

    @classmethod
    def linear(cls, step_percent: int = 10, wait: Duration = Duration.minutes(10)) -> "TrafficRouting":
        """Traffic shifts in steps of ``step_percent`` of capacity (10 to 50), ``wait`` apart."""
        if not 10 <= step_percent <= 50:
            raise ValueError(
                f"TrafficRouting.linear step_percent must be within [10, 50] (SageMaker), got {step_percent}"
            )
        return cls("LINEAR", _check_wait(wait), step_percent)

    @classmethod
    def all_at_once(cls, wait: Duration = Duration.minutes(10)) -> "TrafficRouting":
        """All traffic shifts at once; the old fleet stays for ``wait`` while the alarms are watched."""
        return cls("ALL_AT_ONCE", _check_wait(wait))

    @property
    def steps(self) -> int:
        if self.type == "CANARY":
            return 2
        if self.type == "LINEAR":
            return math.ceil(100 / self.size_percent)
        return 1

    def render(self) -> sagemaker.CfnEndpoint.TrafficRoutingConfigProperty:
        size = (
            sagemaker.CfnEndpoint.CapacitySizeProperty(type="CAPACITY_PERCENT", value=self.size_percent)
            if self.size_percent
            else None
        )
        return sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
            type=self.type,
            wait_interval_in_seconds=int(self.wait.to_seconds()),
            canary_size=size if self.type == "CANARY" else None,
            linear_step_size=size if self.type == "LINEAR" else None,
        )


def _check_wait(wait: Duration) -> Duration:
    seconds = wait.to_seconds()
    if not Token.is_unresolved(seconds) and not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise ValueError(f"TrafficRouting wait must be within 0 and 60 minutes (SageMaker), got {seconds} s")
    return wait


@dataclass(frozen=True)
class EndpointAutoscaling:
    """Target tracking on ``SageMakerVariantInvocationsPerInstance`` between ``min_capacity`` and ``max_capacity``."""

    min_capacity: int = 1
    max_capacity: int = 2
    target_invocations_per_instance: int = 100
    scale_in_cooldown: Duration = Duration.minutes(5)
    scale_out_cooldown: Duration = Duration.minutes(1)


def fleet_minimum(initial_instance_count: int, autoscaling: Optional[EndpointAutoscaling]) -> int:
    """The smallest fleet the endpoint can have during a deployment."""
    if autoscaling is None:
        return initial_instance_count
    return min(initial_instance_count, autoscaling.min_capacity)


# The VPC permissions moved to mlops_constructs.network (every construct that runs in the VPC uses them).
from mlops_constructs.network import (  # noqa: E402,F401  (kept importable from here)
    LAMBDA_VPC_DESCRIBE_ACTIONS,
    LAMBDA_VPC_INTERFACE_ACTIONS,
    SAGEMAKER_VPC_DESCRIBE_ACTIONS,
    SAGEMAKER_VPC_INTERFACE_ACTIONS,
    grant_network_interfaces,
)


def validate_endpoint_props(
    *,
    endpoint_name: str,
    serverless: Optional[ServerlessCapacity],
    autoscaling: Optional[EndpointAutoscaling],
    traffic_routing: Optional[TrafficRouting],
    data_capture_percent: int,
    instance_type: str,
    initial_instance_count: int,
    encrypt_volume: bool,
    execution_role: Optional[iam.IRole],
    model_artifacts_bucket: Optional[s3.IBucket],
    error_rate_threshold_percent: float,
    alarm_evaluation_periods: int,
    in_vpc: bool = False,
) -> None:
    """Raise a one-line ValueError naming the prop and the fix when RealtimeEndpoint's props cannot work."""
    name_ok = re.match(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", endpoint_name)
    if not Token.is_unresolved(endpoint_name) and not name_ok:
        raise ValueError(
            f"RealtimeEndpoint endpoint_name {endpoint_name!r} must be 1-63 letters, digits and hyphens, "
            "starting and ending with a letter or digit (SageMaker)"
        )
    if not 0 <= data_capture_percent <= 100:
        raise ValueError(
            f"RealtimeEndpoint data_capture_percent must be within [0, 100], got {data_capture_percent}"
        )
    if not 0 < error_rate_threshold_percent <= 100:
        raise ValueError(
            "RealtimeEndpoint error_rate_threshold_percent must be within (0, 100], "
            f"got {error_rate_threshold_percent}"
        )
    if alarm_evaluation_periods < 1:
        raise ValueError(
            f"RealtimeEndpoint alarm_evaluation_periods must be at least 1, got {alarm_evaluation_periods}"
        )
    if execution_role is None and model_artifacts_bucket is None:
        raise ValueError(
            "RealtimeEndpoint needs model_artifacts_bucket (where the package's model.tar.gz lives) to build its "
            "execution role; or pass execution_role"
        )
    if autoscaling is not None and autoscaling.max_capacity < autoscaling.min_capacity:
        raise ValueError(
            f"RealtimeEndpoint autoscaling max_capacity ({autoscaling.max_capacity}) must be at least "
            f"min_capacity ({autoscaling.min_capacity})"
        )
    if autoscaling is not None and autoscaling.min_capacity < 1:
        raise ValueError(
            f"RealtimeEndpoint autoscaling min_capacity must be at least 1, got {autoscaling.min_capacity}"
        )
    if serverless is not None:
        memory_mb, max_concurrency = serverless
        if memory_mb not in SERVERLESS_MEMORY_SIZES:
            raise ValueError(
                f"RealtimeEndpoint serverless memory_mb must be one of {list(SERVERLESS_MEMORY_SIZES)}, "
                f"got {memory_mb}"
            )
        if not 1 <= max_concurrency <= 200:
            raise ValueError(
                f"RealtimeEndpoint serverless max_concurrency must be within [1, 200], got {max_concurrency}"
            )
        if autoscaling is not None:
            raise ValueError(
                "RealtimeEndpoint: a serverless endpoint scales by itself up to max_concurrency; Application Auto "
                "Scaling of instances does not apply to it. Remove autoscaling, or use instances"
            )
        if traffic_routing is not None:
            raise ValueError(
                "RealtimeEndpoint: blue/green traffic shifting with auto-rollback (deployment guardrails) is for "
                "instance-based endpoints; a serverless endpoint is updated all at once. Remove traffic_routing, "
                "or use instances"
            )
        if data_capture_percent > 0:
            raise ValueError(
                "RealtimeEndpoint: SageMaker does not capture data from serverless endpoints; set "
                "data_capture_percent=0, or use instances"
            )
        if in_vpc:
            raise ValueError(
                "RealtimeEndpoint: SageMaker Serverless Inference does not support a VPC configuration, so a "
                "serverless endpoint cannot join the VPC; use instances, or remove vpc"
            )
        return
    if not Token.is_unresolved(initial_instance_count) and initial_instance_count < 1:
        raise ValueError(
            f"RealtimeEndpoint initial_instance_count must be at least 1, got {initial_instance_count}"
        )
    if encrypt_volume and _LOCAL_STORAGE_RE.match(instance_type):
        raise ValueError(
            f"RealtimeEndpoint: {instance_type} has local NVMe storage, which is encrypted by the instance and for "
            "which SageMaker refuses a KmsKeyId; pass encrypt_volume=False or choose a type without local storage"
        )
    if traffic_routing is not None and traffic_routing.type in ("CANARY", "LINEAR"):
        fleet = fleet_minimum(initial_instance_count, autoscaling)
        if fleet < 2:
            raise ValueError(
                f"RealtimeEndpoint: {traffic_routing.type.lower()} traffic shifting needs a fleet of at least 2 "
                f"instances (SageMaker caps each step at 50% of the instances), but the fleet can be {fleet}; "
                "use TrafficRouting.all_at_once() or more instances"
            )


def execution_timeout(
    routing: TrafficRouting, termination_wait: Duration, maximum: Optional[Duration]
) -> int:
    bakes = routing.steps * int(routing.wait.to_seconds()) + int(termination_wait.to_seconds())
    if not 0 <= termination_wait.to_seconds() <= MAX_WAIT_SECONDS:
        raise ValueError(
            "RealtimeEndpoint termination_wait must be within 0 and 60 minutes, "
            f"got {termination_wait.to_seconds()} s"
        )
    if maximum is None:
        timeout = max(MIN_EXECUTION_TIMEOUT_SECONDS, bakes + PROVISIONING_HEADROOM_SECONDS)
    else:
        timeout = int(maximum.to_seconds())
    if not MIN_EXECUTION_TIMEOUT_SECONDS <= timeout <= MAX_EXECUTION_TIMEOUT_SECONDS:
        raise ValueError(
            f"RealtimeEndpoint: a deployment may take {timeout} s ({routing.steps} traffic steps of "
            f"{int(routing.wait.to_seconds())} s, then {int(termination_wait.to_seconds())} s before the old fleet "
            "goes, plus provisioning), outside SageMaker's 600-14400 s execution timeout; shorten the bakes or "
            "use fewer steps"
        )
    if timeout <= bakes:
        raise ValueError(
            f"RealtimeEndpoint maximum_execution_timeout ({timeout} s) must exceed the bake times ({bakes} s)"
        )
    return timeout


def data_capture_config(
    bucket: Optional[s3.IBucket],
    prefix: str,
    percent: int,
    encryption_key: kms.IKey,
    csv_content_types: Sequence[str],
    json_content_types: Sequence[str],
) -> Optional[sagemaker.CfnEndpointConfig.DataCaptureConfigProperty]:
    """The endpoint configuration's ``DataCaptureConfig``: request and response capture of ``percent`` of the
    invocations to ``s3://<bucket>/<prefix>``, encrypted with ``encryption_key``; None at 0%.

    :param csv_content_types / json_content_types: the content types SageMaker records as CSV / JSON (an empty
        sequence leaves that list out).
    """
    if percent <= 0:
        return None
    return sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
        enable_capture=True,
        initial_sampling_percentage=percent,
        destination_s3_uri=bucket.s3_url_for_object(prefix.rstrip("/")),
        kms_key_id=encryption_key.key_arn,
        capture_options=[
            sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
            sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output"),
        ],
        capture_content_type_header=sagemaker.CfnEndpointConfig.CaptureContentTypeHeaderProperty(
            csv_content_types=list(csv_content_types) or None,
            json_content_types=list(json_content_types) or None,
        ),
    )
