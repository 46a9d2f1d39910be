"""The pipeline rehearsed with every job in a VPC and network isolation (as prod synthesizes it), and the network
defects the rehearsal must catch: each test isolates the dev definition in a private copy of the assembly, as the
construct does with a VPC, then reintroduces one defect."""

from __future__ import annotations

from typing import Callable, Optional

import pytest

from rehearsal.assembly import RehearsalError
from rehearsal.pipeline import run_pipeline
from tests.rehearsal.test_pipeline_rehearsal import edit_definition, job_steps, stage_for  # noqa: F401 (fixture)

# A landing zone's literal IDs (dev creates no VPC): the rehearsal accepts them like the stacks' own subnets and groups.
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
GROUPS = ["sg-0123456789abcdef0"]


def isolate(submit: Optional[Callable[[str, str], str]] = None, code_channel: bool = True,
            vpc: Optional[dict] = None, champion_isolated: bool = False) -> Callable[[dict], None]:
    """An edit that puts every job step in a VPC with network isolation (ResolveChampion in the VPC without it, as
    the construct writes it: it calls the SageMaker API), and the training source tarball in the ``code`` channel.
    ``submit(object name, S3 URI)`` gives the training job's sagemaker_submit_directory (default: the channel's file,
    as the construct writes it); ``vpc`` replaces the VpcConfig; ``champion_isolated`` isolates ResolveChampion too
    (a defect)."""
    vpc_config = vpc or {"Subnets": SUBNETS, "SecurityGroupIds": GROUPS}

    def edit(definition: dict) -> None:
        for step in job_steps(definition):
            args = step["Arguments"]
            if step["Type"] != "Training":
                isolated = champion_isolated or step["Name"] != "ResolveChampion"
                args["NetworkConfig"] = {"EnableNetworkIsolation": isolated,
                                         "EnableInterContainerTrafficEncryption": True, "VpcConfig": vpc_config}
                continue
            args.update(VpcConfig=vpc_config, EnableNetworkIsolation=True, EnableInterContainerTrafficEncryption=True)
            source = args["HyperParameters"]["sagemaker_submit_directory"]
            assert source.startswith("s3://"), source  # the dev definition: the container downloads it
            object_name = source.rsplit("/", 1)[-1]
            if code_channel:
                args["InputDataConfig"].append({"ChannelName": "code", "DataSource": {"S3DataSource": {
                    "S3DataType": "S3Prefix", "S3Uri": source, "S3DataDistributionType": "FullyReplicated"}}})
            args["HyperParameters"]["sagemaker_submit_directory"] = (
                submit(object_name, source) if submit else f"/opt/ml/input/data/code/{object_name}")

    return edit


def run_isolated(stage_for, assembly_copy, **defect):
    edit_definition(assembly_copy, isolate(**defect))
    stage = stage_for(assembly_copy)
    return stage, run_pipeline(stage.rh, stage.model)


def test_isolated_pipeline_trains_from_the_code_channel_and_registers(stage_for, assembly_copy):
    """Every job isolated (their processes get no credentials): the run still registers a package, the training job
    extracting its source from the code channel's file."""
    stage, run = run_isolated(stage_for, assembly_copy)
    run.check()
    jobs = stage.rh.facts["pipeline"][-1]["jobs"]
    assert all(jobs[name]["network_isolation"] is True for name in ("Preprocess", "Train", "Evaluate"))
    assert jobs["ResolveChampion"]["network_isolation"] is False  # it calls the registry; Evaluate gets its output


def test_isolated_resolve_champion_cannot_reach_the_registry(stage_for, assembly_copy):
    """ResolveChampion with network isolation gets no credentials and no endpoint: it cannot list the packages."""
    _, run = run_isolated(stage_for, assembly_copy, champion_isolated=True)
    assert run.status == "Failed" and run.failed_step == "ResolveChampion"
    assert "ResolveChampion failed" in run.fail_message


# --- regression tests: each reintroduces a network defect -------------------------------------------------------------
def test_isolated_training_that_downloads_its_source_from_s3_fails(stage_for, assembly_copy):
    """Network isolation on, sagemaker_submit_directory still the S3 URI: the container would download it, and
    cannot."""
    _, run = run_isolated(stage_for, assembly_copy, submit=lambda name, uri: uri, code_channel=False)
    assert run.status == "Failed" and run.failed_step == "Train"
    assert "EnableNetworkIsolation: the training container cannot download sagemaker_submit_directory 's3://" in (
        run.fail_message)
    with pytest.raises(RehearsalError, match="cannot download"):
        run.check()


def test_isolated_training_naming_sourcedir_tar_gz_instead_of_the_asset_fails(stage_for, assembly_copy):
    """The SDK's own path, /opt/ml/input/data/code/sourcedir.tar.gz: the channel downloads the asset object under its
    own name (<hash>.gz), so no such file exists."""
    _, run = run_isolated(stage_for, assembly_copy, submit=lambda name, uri: "/opt/ml/input/data/code/sourcedir.tar.gz")
    assert run.status == "Failed" and run.failed_step == "Train"
    assert "sagemaker_submit_directory /opt/ml/input/data/code/sourcedir.tar.gz is not a file the input channels " \
           "created" in run.fail_message
    assert "must name the source tarball's asset object" in run.fail_message


@pytest.mark.parametrize("vpc,expected", [
    ({"Subnets": ["subnet-0placeholder01"], "SecurityGroupIds": GROUPS},
     "VpcConfig.Subnets names 'subnet-0placeholder01', which is no subnet of the deployed stacks"),
    ({"Subnets": SUBNETS, "SecurityGroupIds": []}, "VpcConfig.SecurityGroupIds is empty"),
])
def test_vpc_config_naming_no_deployed_subnet_or_group_fails(stage_for, assembly_copy, vpc, expected):
    _, run = run_isolated(stage_for, assembly_copy, vpc=vpc)
    assert run.status == "Failed" and run.failed_step == "ResolveChampion"  # the first job step
    assert expected in run.fail_message
