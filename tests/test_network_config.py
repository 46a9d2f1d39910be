"""network: and iam: in config/<env>.yaml: defaults, and each mistake as one line naming the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from platform_config import ConfigError, load_config
from platform_config.network import DEFAULT_INTERFACE_ENDPOINTS, NetworkConfig

ROOT = Path(__file__).resolve().parent.parent
PREFIX_LIST = "pl-6da54004"
SUBNETS = [
    {"id": "subnet-0123456789abcdef0", "availability_zone": "eu-west-1a"},
    {"id": "subnet-0fedcba9876543210", "availability_zone": "eu-west-1b"},
]
EXISTING = {"mode": "existing", "vpc_id": "vpc-0123456789abcdef0", "subnets": SUBNETS, "s3_prefix_list_id": PREFIX_LIST,
            "api_egress_cidrs": ["10.0.0.0/16"]}


def _load(tmp_path: Path, *, keep_serverless: bool = False, **sections):
    data = yaml.safe_load((ROOT / "config" / "dev.yaml").read_text())
    data.update(sections)
    if not keep_serverless:  # dev's serverless staging runs in no VPC (see test_serverless_stage_in_a_vpc)
        for model in data["models"]:
            for stage in model.get("stages", []):
                (stage.get("endpoint") or {}).pop("serverless", None)
    (tmp_path / "dev.yaml").write_text(yaml.safe_dump(data))
    return load_config("dev", tmp_path)


def _error(tmp_path: Path, keep_serverless: bool = False, **sections) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, keep_serverless=keep_serverless, **sections)
    lines = str(info.value).splitlines()
    assert len(lines) == 1, lines
    return lines[0].split("dev.yaml: ", 1)[1]


def test_defaults_leave_the_network_and_iam_off():
    cfg = load_config("dev")
    assert cfg.network.mode == "none" and not cfg.network.enabled
    assert cfg.iam.permissions_boundary is None and cfg.iam.role_path is None


def test_create_defaults(tmp_path):
    network = _load(tmp_path, network={"mode": "create", "s3_prefix_list_id": PREFIX_LIST}).network
    assert (network.az_count, network.cidr, network.flow_logs) == (2, "10.40.0.0/16", True)
    assert tuple(network.interface_endpoints) == DEFAULT_INTERFACE_ENDPOINTS
    assert {"sagemaker.api", "sagemaker.runtime", "ecr.api", "ecr.dkr", "logs", "monitoring", "sts", "kms",
            "events", "glue", "sns"} == set(DEFAULT_INTERFACE_ENDPOINTS)


def test_existing_and_iam(tmp_path):
    cfg = _load(tmp_path, network=EXISTING, iam={"permissions_boundary": "create", "role_path": "/mlops/dev/"})
    assert [s.availability_zone for s in cfg.network.subnets] == ["eu-west-1a", "eu-west-1b"]
    assert cfg.network.create_endpoints is False
    arn = "arn:aws:iam::123456789012:policy/landing-zone/boundary"
    assert _load(tmp_path, iam={"permissions_boundary": arn}).iam.permissions_boundary == arn


def test_subnet_without_its_az(tmp_path):
    subnets = [{"id": "subnet-0123456789abcdef0"}, SUBNETS[1]]
    assert _error(tmp_path, network={**EXISTING, "subnets": subnets}) == (
        "network.subnets[0]: subnet 'subnet-0123456789abcdef0' has no availability_zone; add availability_zone: <az> "
        "(e.g. eu-west-1a, from the VPC console or 'aws ec2 describe-subnets')"
    )
    assert _error(tmp_path, network={**EXISTING, "subnets": ["subnet-0123456789abcdef0", SUBNETS[1]]}) == (
        "network.subnets[0] = 'subnet-0123456789abcdef0': a subnet needs its availability_zone; write it as "
        "{id: subnet-0123456789abcdef0, availability_zone: <az>}"
    )


def test_az_count_below_two(tmp_path):
    assert _error(tmp_path, network={"mode": "create", "s3_prefix_list_id": PREFIX_LIST, "az_count": 1}) == (
        "network.az_count = 1: must be between 2 and 6 (endpoints and functions need two Availability Zones for "
        "availability); set az_count: 2 or more"
    )


def test_vpc_id_in_create_mode(tmp_path):
    network = {"mode": "create", "s3_prefix_list_id": PREFIX_LIST, "vpc_id": "vpc-0123456789abcdef0"}
    assert _error(tmp_path, network=network) == (
        "network: vpc_id applies to mode existing, not create; remove it (mode create builds its own VPC), or set "
        "mode: existing to use the landing zone's"
    )


def test_create_field_in_existing_mode(tmp_path):
    assert _error(tmp_path, network={**EXISTING, "cidr": "10.1.0.0/16"}) == (
        "network: cidr applies to mode create, not existing; remove it (mode existing uses the VPC as it is), or set "
        "mode: create"
    )


_NO_SUBNETS = "network: mode existing needs subnets: two or more {id, availability_zone} in distinct AZs; add them"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"subnets": None}, _NO_SUBNETS),
        ({"subnets": SUBNETS[:1]}, _NO_SUBNETS),
        ({"vpc_id": None}, "network: mode existing needs vpc_id; set vpc_id: vpc-... (the landing zone's VPC)"),
        (
            {"subnets": [SUBNETS[0], {**SUBNETS[1], "availability_zone": "eu-west-1a"}]},
            "network: subnets must be in distinct Availability Zones, got ['eu-west-1a', 'eu-west-1a']; keep one "
            "subnet per AZ",
        ),
    ],
)
def test_existing_mode_mistakes(tmp_path, change, message):
    network = {k: v for k, v in {**EXISTING, **change}.items() if v is not None}  # None: the field is left out
    assert _error(tmp_path, network=network) == message


def test_vpc_mode_needs_the_s3_prefix_list(tmp_path):
    assert _error(tmp_path, network={"mode": "create"}) == (
        "network: mode create needs s3_prefix_list_id (the workload security groups reach S3 through it); find it "
        "with 'aws ec2 describe-prefix-lists --filters Name=prefix-list-name,Values=com.amazonaws.<region>.s3' and "
        "set it"
    )


def test_bad_cidr(tmp_path):
    network = {"mode": "create", "s3_prefix_list_id": PREFIX_LIST}
    assert _error(tmp_path, network={**network, "cidr": "10.40.0.1/16"}) == (
        "network.cidr = '10.40.0.1/16': is not an IPv4 network in CIDR notation; use e.g. 10.40.0.0/16"
    )
    assert _error(tmp_path, network={**network, "cidr": "10.0.0.0/8"}) == (
        "network.cidr = '10.0.0.0/8': must be a /16 to /24 block (a VPC allows /16 at most; subnets and endpoints "
        "need room); use e.g. 10.40.0.0/16"
    )


def test_bad_endpoint_names(tmp_path):
    network = {"mode": "create", "s3_prefix_list_id": PREFIX_LIST}
    assert _error(tmp_path, network={**network, "interface_endpoints": ["com.amazonaws.eu-west-1.sts"]}) == (
        "network.interface_endpoints: 'com.amazonaws.eu-west-1.sts' is not a service short name; use the part after "
        "com.amazonaws.<region>. (e.g. sagemaker.api)"
    )
    assert _error(tmp_path, network={**network, "interface_endpoints": ["s3"]}) == (
        "network.interface_endpoints: lists s3; remove it (S3 goes through the gateway endpoint the VPC always gets)"
    )


def test_boundary_that_is_not_a_policy_arn(tmp_path):
    assert _error(tmp_path, iam={"permissions_boundary": "arn:aws:iam::123456789012:role/boundary"}) == (
        "iam.permissions_boundary = 'arn:aws:iam::123456789012:role/boundary': must be a managed policy ARN "
        "(arn:aws:iam::<account>:policy/<name>) or 'create' (the platform defines the boundary); fix the ARN"
    )


def test_bad_role_path(tmp_path):
    assert _error(tmp_path, iam={"role_path": "mlops"}) == (
        "iam.role_path = 'mlops': must be an IAM path: '/' or '/a/b/' (starts and ends with '/', printable ASCII, no "
        "blanks or '//', 512 characters at most); fix it"
    )


@pytest.mark.parametrize("path", ["/", "/mlops/", "/mlops/dev/"])
def test_good_role_paths(path):
    from platform_config.network import IamConfig

    assert IamConfig(role_path=path).role_path == path


@pytest.mark.parametrize("path", ["/mlops", "//", "/a//b/", "/a b/"])
def test_bad_role_paths(path):
    from platform_config.network import IamConfig

    with pytest.raises(ValueError, match="must be an IAM path"):
        IamConfig(role_path=path)


def test_network_config_is_usable_alone():
    assert NetworkConfig().mode == "none"


def test_serverless_stage_in_a_vpc(tmp_path):
    models = yaml.safe_load((ROOT / "config" / "dev.yaml").read_text())["models"]
    models[0]["stages"][0]["endpoint"] = {"serverless": {"memory_mb": 2048}, "data_capture_percent": 0}
    network = {"mode": "create", "s3_prefix_list_id": PREFIX_LIST}
    assert _error(tmp_path, keep_serverless=True, network=network, models=models) == (
        "(top level): models 'abalone' stage 'staging' serves serverless, which runs in no VPC and without "
        "network isolation, but network.mode is create; serve instances in that stage (remove its serverless) or "
        "use network.mode: none"
    )
