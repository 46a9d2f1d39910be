"""Network isolation and landing-zone fit: ``network:`` and ``iam:`` in ``config/<env>.yaml``.

    network:
      mode: create                      # none (default) | create | existing
      s3_prefix_list_id: pl-6da54004    # the region's S3 managed prefix list (see NetworkConfig)
      az_count: 2
      cidr: 10.40.0.0/16

    network:
      mode: existing
      vpc_id: vpc-0123456789abcdef0
      subnets:
        - {id: subnet-0123456789abcdef0, availability_zone: eu-west-1a}
        - {id: subnet-0fedcba9876543210, availability_zone: eu-west-1b}
      s3_prefix_list_id: pl-6da54004

    iam:
      permissions_boundary: create      # or arn:aws:iam::123456789012:policy/<name>
      role_path: /mlops/

Synth stays offline: nothing here is looked up. IDs come from the config; a created VPC takes its AZs from
``Fn::GetAZs`` at deploy time.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from platform_config.names import VPC_INTERFACE_ENDPOINTS

#: The interface endpoints a created VPC gets by default: what the platform's in-VPC components call (the SageMaker
#: jobs and models, the inference functions and the Glue ETL jobs; the CI/CD projects do not run in the VPC).
#:
#: - ``sagemaker.api``: in-VPC code that calls SageMaker (a custom train.py or step using the SageMaker SDK; the
#:   shipped steps do not);
#: - ``sagemaker.runtime``: the inference function's ``endpoint_proxy`` mode (InvokeEndpoint);
#: - ``ecr.api``, ``ecr.dkr``: images pulled from inside the VPC (the workstation's Deep Learning containers; layers
#:   come from S3, through the gateway endpoint). SageMaker and Lambda pull their own images on the service side;
#: - ``logs``, ``monitoring``: Glue continuous logging and job metrics, Powertools/embedded metrics outside Lambda;
#: - ``sts``: credentials of assumed roles (the SDKs' regional STS endpoint);
#: - ``kms``: SSE-KMS data keys the clients request themselves (Glue's job bookmarks and its Spark writes);
#: - ``events``: EventBridge PutEvents from in-VPC code (none of the shipped code publishes; the platform's rules
#:   match service events). Kept so a step that publishes works; drop it from the list to save an endpoint;
#: - ``glue``: the Glue ETL job's Data Catalog calls (the Glue docs list it with S3 for jobs in a VPC);
#: - ``sns``: the drift-retraining and ground-truth functions publish to the alarm topic.
#:
#: Not included, because no component inside the VPC calls them: ``codebuild``, ``codeconnections``, ``lambda`` (the
#: CI/CD projects and the deploy pipeline run outside the VPC; nothing in the VPC invokes a function). Add ``xray``
#: when the inference function's traces must not leave through Lambda's own path.
DEFAULT_INTERFACE_ENDPOINTS = VPC_INTERFACE_ENDPOINTS
#: The most AZs a region offers (us-east-1 has six); Fn::GetAZs cannot select more than the region has.
MAX_AZ_COUNT = 6
_ENDPOINT_RE = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)*$")
_MODE_FIELDS = {
    "create": ("az_count", "cidr", "interface_endpoints", "flow_logs"),
    "existing": ("vpc_id", "subnets", "security_group_ids", "create_endpoints", "api_egress_cidrs", "codebuild_in_vpc"),
}

_MODE_FIXES = {
    "none": "remove it, or set the mode it belongs to",
    "create": "remove it (mode create builds its own VPC), or set mode: existing to use the landing zone's",
    "existing": "remove it (mode existing uses the VPC as it is), or set mode: create",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubnetConfig(_Strict):
    """One subnet of an existing VPC: its ID and its Availability Zone (no lookup at synth)."""

    id: str = Field(pattern=r"^subnet-[0-9a-f]{8,17}$")
    availability_zone: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d[a-z]$")

    @model_validator(mode="before")
    @classmethod
    def _needs_az(cls, data):
        if isinstance(data, str):
            raise ValueError(
                f"a subnet needs its availability_zone; write it as {{id: {data}, availability_zone: <az>}}"
            )
        if isinstance(data, dict) and "id" in data and "availability_zone" not in data:
            raise ValueError(f"subnet '{data['id']}' has no availability_zone; add availability_zone: <az> (e.g. "
                             "eu-west-1a, from the VPC console or 'aws ec2 describe-subnets')")
        return data


class NetworkConfig(_Strict):
    """Where jobs, models, functions and Glue jobs run (DESIGN.md, "Networks").

    ``mode``: ``none`` (public service endpoints, no VPC), ``create`` (a VPC with private isolated subnets only: no
    NAT, no internet gateway; an S3 gateway endpoint, the interface endpoints, flow logs) or ``existing`` (the landing
    zone's VPC and subnets, by ID).

    ``s3_prefix_list_id`` (VPC modes, required): the ID of the region's AWS-managed S3 prefix list
    (``com.amazonaws.<region>.s3``). The workload security groups allow HTTPS to S3 through it and to nothing else
    outside the VPC; CloudFormation exposes no attribute for it and a synth does not look it up.
    """

    mode: Literal["none", "create", "existing"] = "none"
    s3_prefix_list_id: Optional[str] = Field(default=None, pattern=r"^pl-[0-9a-f]{8,17}$")
    # mode: create
    az_count: int = Field(default=2, description=f"Availability Zones of the created VPC (2 to {MAX_AZ_COUNT}).")
    cidr: str = Field(default="10.40.0.0/16", description="The created VPC's IPv4 CIDR block, /16 to /24.")
    interface_endpoints: list[str] = Field(
        default_factory=lambda: list(DEFAULT_INTERFACE_ENDPOINTS),
        description="Interface endpoint service short names (com.amazonaws.<region>.<name>), private DNS on.",
    )
    flow_logs: bool = Field(default=True, description="VPC flow logs to a KMS-encrypted log group with retention.")
    # mode: existing
    vpc_id: Optional[str] = Field(default=None, pattern=r"^vpc-[0-9a-f]{8,17}$")
    subnets: list[SubnetConfig] = Field(default_factory=list, description="Two or more, in distinct AZs.")
    security_group_ids: list[str] = Field(
        default_factory=list, description="Security groups the landing zone requires on every workload, in addition."
    )
    create_endpoints: bool = Field(
        default=False, description="Create the interface endpoints in the existing VPC (the landing zone's usually do)."
    )
    codebuild_in_vpc: bool = Field(
        default=False,
        description="Run the model CI/CD CodeBuild projects in the VPC too. They install from PyPI and npm: the "
        "subnets need the landing zone's NAT or proxy, and security_group_ids must allow that egress (the "
        "platform's own groups allow none).",
    )
    api_egress_cidrs: list[str] = Field(
        default_factory=list,
        description="Where the landing zone's AWS API endpoints are (IPv4 CIDRs; HTTPS only). Required with "
        "create_endpoints false: the workload groups allow no egress to 0.0.0.0/0.",
    )

    @field_validator("az_count")
    @classmethod
    def _az_count(cls, v: int) -> int:
        if not 2 <= v <= MAX_AZ_COUNT:
            raise ValueError(f"must be between 2 and {MAX_AZ_COUNT} (endpoints and functions need two Availability "
                             "Zones for availability); set az_count: 2 or more")
        return v

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        try:
            network = ipaddress.IPv4Network(v, strict=True)
        except ValueError:
            raise ValueError("is not an IPv4 network in CIDR notation; use e.g. 10.40.0.0/16") from None
        if not 16 <= network.prefixlen <= 24:
            raise ValueError("must be a /16 to /24 block (a VPC allows /16 at most; subnets and endpoints need "
                             "room); use e.g. 10.40.0.0/16")
        return v

    @field_validator("interface_endpoints")
    @classmethod
    def _endpoints(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _ENDPOINT_RE.match(name) or name.startswith("com."):
                raise ValueError(f"'{name}' is not a service short name; use the part after com.amazonaws.<region>. "
                                 "(e.g. sagemaker.api)")
        if len(set(v)) != len(v):
            raise ValueError(f"repeats a service: {v}; list each once")
        if "s3" in v:
            raise ValueError("lists s3; remove it (S3 goes through the gateway endpoint the VPC always gets)")
        return v

    @field_validator("api_egress_cidrs")
    @classmethod
    def _egress(cls, v: list[str]) -> list[str]:
        for cidr in v:
            try:
                network = ipaddress.IPv4Network(cidr, strict=True)
            except ValueError:
                raise ValueError(f"'{cidr}' is not an IPv4 network in CIDR notation; use e.g. 10.0.0.0/16") from None
            if network.prefixlen == 0:
                raise ValueError(f"'{cidr}' opens egress to every address; name the endpoints' network instead")
        return v

    @field_validator("security_group_ids")
    @classmethod
    def _groups(cls, v: list[str]) -> list[str]:
        for group in v:
            if not re.match(r"^sg-[0-9a-f]{8,17}$", group):
                raise ValueError(f"'{group}' is not a security group ID (sg-...)")
        return v

    @model_validator(mode="after")
    def _mode(self) -> "NetworkConfig":
        for mode, fields in _MODE_FIELDS.items():
            for name in fields:
                if name in self.model_fields_set and self.mode != mode:
                    raise ValueError(f"{name} applies to mode {mode}, not {self.mode}; {_MODE_FIXES[self.mode]}")
        if self.mode != "none" and self.s3_prefix_list_id is None:
            raise ValueError(
                f"mode {self.mode} needs s3_prefix_list_id (the workload security groups reach S3 through it); find "
                "it with 'aws ec2 describe-prefix-lists --filters Name=prefix-list-name,Values=com.amazonaws."
                "<region>.s3' and set it"
            )
        if self.mode == "none" and "s3_prefix_list_id" in self.model_fields_set:
            raise ValueError("s3_prefix_list_id applies to modes create and existing; remove it or set the mode")
        if self.mode == "existing":
            self._check_existing()
        return self

    def _check_existing(self) -> None:
        if self.vpc_id is None:
            raise ValueError("mode existing needs vpc_id; set vpc_id: vpc-... (the landing zone's VPC)")
        if len(self.subnets) < 2:
            raise ValueError("mode existing needs subnets: two or more {id, availability_zone} in distinct AZs; "
                             "add them")
        azs = [s.availability_zone for s in self.subnets]
        if len(set(azs)) != len(azs):
            raise ValueError(f"subnets must be in distinct Availability Zones, got {azs}; keep one subnet per AZ")
        ids = [s.id for s in self.subnets]
        if len(set(ids)) != len(ids):
            raise ValueError(f"subnets repeat an ID: {ids}; list each subnet once")
        if self.codebuild_in_vpc and not self.security_group_ids:
            raise ValueError("codebuild_in_vpc needs security_group_ids: the landing zone's groups that let the builds "
                             "reach PyPI and npm (the platform's own groups allow no internet egress); add them")
        if not self.create_endpoints and not self.api_egress_cidrs:
            raise ValueError("mode existing needs create_endpoints: true or api_egress_cidrs (the CIDRs of the "
                             "landing zone's interface endpoints, reached on HTTPS); set one")

    @property
    def enabled(self) -> bool:
        """Workloads join a VPC (mode create or existing)."""
        return self.mode != "none"


class IamConfig(_Strict):
    """Landing-zone IAM rules every role the platform creates follows.

    ``permissions_boundary``: an existing customer managed policy's ARN, or ``create`` (the platform defines the
    boundary in mlops_constructs.permissions.BoundaryPolicy: what it allows and denies is documented there). None: no
    boundary. ``role_path``: the IAM path of every role (``/`` or ``/a/b/``); None: CloudFormation's default ``/``.
    """

    permissions_boundary: Optional[str] = None
    role_path: Optional[str] = None

    @field_validator("permissions_boundary")
    @classmethod
    def _boundary(cls, v: Optional[str]) -> Optional[str]:
        if v is None or v == "create":
            return v
        if not re.match(r"^arn:aws[a-z-]*:iam::(\d{12}|aws):policy/([\w+=,.@-]+/)*[\w+=,.@-]{1,128}$", v):
            raise ValueError("must be a managed policy ARN (arn:aws:iam::<account>:policy/<name>) or 'create' (the "
                             "platform defines the boundary); fix the ARN")
        return v

    @field_validator("role_path")
    @classmethod
    def _path(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and (len(v) > 512 or not re.match(r"^/([\x21-\x2e\x30-\x7e]+/)*$", v)):
            raise ValueError("must be an IAM path: '/' or '/a/b/' (starts and ends with '/', printable ASCII, no "
                             "blanks or '//', 512 characters at most); fix it")
        return v
