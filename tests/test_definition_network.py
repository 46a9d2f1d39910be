"""The pipeline definition in a VPC (PipelineInputs subnet_count / security_group_count), built by the SageMaker SDK
offline: every job isolated in the VPC, the training source as the ``code`` channel, and the cache key following it."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re

import pytest

from mlops_constructs import sagemaker_definition as sdk
from sagemaker_steps.model_spec import ModelSpec

JOB_TYPES = ("Processing", "Training", "QualityCheck")


def _inputs(**changes) -> sdk.PipelineInputs:
    model = ModelSpec(name="m", target="rings", metric="rmse", threshold=3.0, hyperparameters={"max_depth": 5})
    inputs = sdk.PipelineInputs(spec=model, pipeline_name="p", model_package_group_name="g",
                                artifacts_prefix="models/m/", job_tags={"project": "x", "environment": "dev"},
                                code_digest="sha256:1")
    return dataclasses.replace(inputs, **changes)


@pytest.fixture(scope="module")
def plain():
    return sdk.build_definition(_inputs())


@pytest.fixture(scope="module")
def in_vpc():
    return sdk.build_definition(_inputs(subnet_count=2, security_group_count=2))


def _jobs(definition: dict) -> dict[str, dict]:
    return {s["Name"]: s for s in definition["Steps"] if s["Type"] in JOB_TYPES}


def _network(step: dict) -> dict:
    """(VpcConfig, EnableNetworkIsolation, EnableInterContainerTrafficEncryption) wherever the job kind keeps them."""
    args = step["Arguments"]
    return args if step["Type"] == "Training" else args.get("NetworkConfig", {})


def test_placeholders_are_distinct_and_never_substrings_of_one_another():
    names = [*sdk.placeholder_subnets(sdk.MAX_SUBNETS), *sdk.placeholder_security_groups(sdk.MAX_SECURITY_GROUPS),
             sdk.TRAIN_SOURCE_OBJECT, sdk.TRAIN_SOURCE_DIR, sdk.PLACEHOLDER_CODE]
    assert len(set(names)) == len(names)
    for a, b in itertools.permutations(names[:-3] + [sdk.TRAIN_SOURCE_OBJECT], 2):
        assert a not in b, (a, b)
    assert sdk.TRAIN_SOURCE_OBJECT not in sdk.TRAIN_SOURCE_DIR
    # valid-looking IDs within VpcConfig's limits (32 characters)
    assert all(len(n) <= 32 for n in names[:-3])


def test_every_job_joins_the_vpc_isolated_and_encrypted(in_vpc):
    """Every job in the VPC and encrypted; every job isolated but ResolveChampion, which calls the SageMaker API
    (ListModelPackages, DescribeModelPackage) and reads the champion's model.tar.gz: it touches no data, and Evaluate,
    which scores the champion on the test split, stays isolated."""
    subnets, groups = sdk.placeholder_subnets(2), sdk.placeholder_security_groups(2)
    jobs = _jobs(in_vpc)
    assert set(jobs) == {"ResolveChampion", "Preprocess", "DataQualityBaseline", "Train", "Evaluate"}
    for name, step in jobs.items():
        network = _network(step)
        assert network["VpcConfig"] == {"Subnets": subnets, "SecurityGroupIds": groups}, name
        assert network["EnableNetworkIsolation"] is (name != "ResolveChampion"), name
        assert network["EnableInterContainerTrafficEncryption"] is True, name
    resolve = jobs["ResolveChampion"]["Arguments"]
    assert "KmsKeyId" in json.dumps(resolve["ProcessingOutputConfig"])
    assert resolve["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"]
    assert not resolve.get("ProcessingInputs") or [i["InputName"] for i in resolve["ProcessingInputs"]] == ["code"]


def test_without_the_champion_comparison_every_job_is_isolated():
    off = sdk.build_definition(_inputs(spec=dataclasses.replace(_inputs().spec, champion=False), subnet_count=2,
                                       security_group_count=2))
    jobs = _jobs(off)
    assert set(jobs) == {"Preprocess", "DataQualityBaseline", "Train", "Evaluate"}
    assert all(_network(step)["EnableNetworkIsolation"] is True for step in jobs.values())


def test_isolated_training_reads_its_source_from_the_code_channel(in_vpc, plain):
    train = _jobs(in_vpc)["Train"]["Arguments"]
    channels = {c["ChannelName"]: c for c in train["InputDataConfig"]}
    code = channels[sdk.TRAIN_CODE_CHANNEL]["DataSource"]["S3DataSource"]
    assert code["S3Uri"] == sdk.TRAIN_SOURCE_DIR and code["S3DataType"] == "S3Prefix"
    # the container path names the object as the channel downloads it (its own name: the construct puts the asset's)
    submit = train["HyperParameters"]["sagemaker_submit_directory"]
    assert submit == f"/opt/ml/input/data/{sdk.TRAIN_CODE_CHANNEL}/{sdk.TRAIN_SOURCE_OBJECT}"
    assert "s3://" not in json.dumps(train["HyperParameters"])
    # the other channels are the same as without a VPC
    plain_channels = _jobs(plain)["Train"]["Arguments"]["InputDataConfig"]
    assert [c for c in train["InputDataConfig"] if c["ChannelName"] != sdk.TRAIN_CODE_CHANNEL] == plain_channels


def test_without_a_vpc_no_job_has_network_settings(plain):
    text = json.dumps(plain)
    for field in ("NetworkConfig", "VpcConfig", "EnableNetworkIsolation", "EnableInterContainerTrafficEncryption",
                  "placeholder0", sdk.TRAIN_SOURCE_OBJECT):
        assert field not in text, field
    train = _jobs(plain)["Train"]["Arguments"]
    assert train["HyperParameters"]["sagemaker_submit_directory"] == sdk.TRAIN_SOURCE_DIR
    assert sdk.TRAIN_CODE_CHANNEL not in {c["ChannelName"] for c in train["InputDataConfig"]}


def test_register_model_needs_no_vpc(in_vpc, plain):
    """The package's model is placed by the serving stack (CfnModel VpcConfig), not by the pipeline."""
    def register(definition):
        (check,) = [s for s in definition["Steps"] if s["Type"] == "Condition"]
        return check["Arguments"]["IfSteps"]

    assert register(in_vpc) == register(plain)


@pytest.mark.parametrize("subnets,groups", [(1, 1), (2, 1), (2, 3), (3, 2)])
def test_cache_key_follows_the_subnet_and_group_counts(subnets, groups):
    base = sdk.definition_cache_key(_inputs())
    key = sdk.definition_cache_key(_inputs(subnet_count=subnets, security_group_count=groups))
    assert key != base
    assert _inputs(subnet_count=subnets, security_group_count=groups).as_dict()["subnet_count"] == subnets
    others = {sdk.definition_cache_key(_inputs(subnet_count=s, security_group_count=g))
              for s, g in [(1, 1), (2, 1), (2, 3), (3, 2)] if (s, g) != (subnets, groups)}
    assert key not in others


def test_cached_definition_of_another_subnet_count_is_not_reused(tmp_path, in_vpc):
    two = sdk.cached_definition(_inputs(subnet_count=2, security_group_count=2), tmp_path)
    assert two == in_vpc
    three = sdk.cached_definition(_inputs(subnet_count=3, security_group_count=2), tmp_path)
    assert _network(_jobs(three)["Preprocess"])["VpcConfig"]["Subnets"] == sdk.placeholder_subnets(3)
    assert len(list(tmp_path.glob("*.json"))) == 2


@pytest.mark.parametrize("changes,message", [
    ({"subnet_count": 1}, "both 0 (no VPC) or both set"),
    ({"security_group_count": 1}, "both 0 (no VPC) or both set"),
    ({"subnet_count": 17, "security_group_count": 1}, "subnet_count must be 0 to 16"),
    ({"subnet_count": 1, "security_group_count": 6}, "security_group_count must be 0 to 5"),
    ({"subnet_count": -1, "security_group_count": 1}, "subnet_count must be 0 to 16"),
])
def test_inconsistent_counts_are_refused(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _inputs(**changes)
