"""network.codebuild_in_vpc (mode existing): the model CI/CD projects run in the landing zone's subnets with its own
security groups (the builds install from PyPI and npm: the platform's groups allow no internet egress)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from platform_config import ConfigError, load_config
from stacks.app_builder import build_app

ROOT = Path(__file__).resolve().parents[2]
LANDING_ZONE_GROUP = "sg-0123456789abcdef0"
EXISTING = {
    "mode": "existing", "vpc_id": "vpc-0123456789abcdef0", "s3_prefix_list_id": "pl-63a5400a",
    "subnets": [{"id": "subnet-0123456789abcdef0", "availability_zone": "us-east-1a"},
                {"id": "subnet-0fedcba9876543210", "availability_zone": "us-east-1b"}],
    "api_egress_cidrs": ["10.0.0.0/8"], "security_group_ids": [LANDING_ZONE_GROUP], "codebuild_in_vpc": True,
}


def _config_dir(tmp_path: Path, network: dict) -> Path:
    data = yaml.safe_load((ROOT / "config" / "dev.yaml").read_text())
    data["network"] = network
    (tmp_path / "dev.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


@pytest.fixture(scope="module")
def model_template(tmp_path_factory) -> dict:
    config = load_config("dev", _config_dir(tmp_path_factory.mktemp("config"), EXISTING))
    platform = build_app(config, outdir=tmp_path_factory.mktemp("cdk-codebuild"),
                         extra_context={"aws:cdk:disable-asset-staging": True})
    assembly = platform.synth()  # cdk-nag on the whole app
    stack = platform.stacks["model-abalone"]
    return json.loads(Path(assembly.get_stack_by_name(stack.stack_name).template_full_path).read_text())


def test_every_model_cicd_project_runs_in_the_landing_zone_vpc(model_template):
    projects = {k: r["Properties"] for k, r in model_template["Resources"].items()
                if r["Type"] == "AWS::CodeBuild::Project"}
    assert len(projects) >= 4  # build, resolve, deploy and smoke per stage
    for name, props in projects.items():
        vpc = props.get("VpcConfig")
        assert vpc, f"{name} runs outside the VPC"
        assert vpc["SecurityGroupIds"] == [LANDING_ZONE_GROUP], name
        assert len(vpc["Subnets"]) == 2 and "Fn::ImportValue" in json.dumps(vpc["Subnets"]), name


def test_codebuild_in_vpc_needs_the_landing_zone_groups(tmp_path):
    network = {k: v for k, v in EXISTING.items() if k != "security_group_ids"}
    with pytest.raises(ConfigError) as info:
        load_config("dev", _config_dir(tmp_path, network))
    assert str(info.value).endswith(
        "network: codebuild_in_vpc needs security_group_ids: the landing zone's groups that let the builds reach PyPI "
        "and npm (the platform's own groups allow no internet egress); add them")


def test_codebuild_in_vpc_is_for_existing_mode_only(tmp_path):
    network = {"mode": "create", "s3_prefix_list_id": "pl-63a5400a", "codebuild_in_vpc": True}
    with pytest.raises(ConfigError) as info:
        load_config("dev", _config_dir(tmp_path, network))
    assert "network: codebuild_in_vpc applies to mode existing, not create" in str(info.value)
