"""The optional parts wired from config: the DLAMI workstation stack and the platform's self-mutating pipeline."""

from __future__ import annotations

import json

import pytest

from platform_config import load_config
from stacks.app_builder import build_app


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    cfg = load_config("dev")
    cfg = cfg.model_copy(
        update={
            "workstation": cfg.workstation.model_copy(update={"enabled": True}),
            "platform_pipeline": cfg.platform_pipeline.model_copy(update={"enabled": True}),
        }
    )
    outdir = tmp_path_factory.mktemp("cdk-full")
    assembly = build_app(cfg, outdir=outdir).synth()  # cdk-nag runs: a finding raises here
    return assembly


def test_workstation_and_pipeline_stacks_exist(full):
    names = sorted(s.stack_name for s in full.stacks)
    assert "mlops-dev-workstation" in names and "mlops-dev-pipeline" in names
    ws = json.dumps(next(s for s in full.stacks if s.stack_name == "mlops-dev-workstation").template)
    assert "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>" in ws
    assert "sagemaker:StartPipelineExecution" in ws and "pipeline/mlops-dev-abalone" in ws


def test_pipeline_stages_deploy_every_environment_without_serving_stacks(full):
    pipeline = next(s for s in full.stacks if s.stack_name == "mlops-dev-pipeline").template
    text = json.dumps(pipeline)
    assert "SelfMutate" in text or "UpdatePipeline" in text
    assert "make test" in text
    stage_stacks = sorted(s.stack_name for a in full.nested_assemblies for s in a.nested_assembly.stacks)
    # one Stage per platform_pipeline.environments (dev, prod), each with its environment's stacks but no serving
    assert any(n.startswith("dev-") or "mlops-dev-model-abalone" in n for n in stage_stacks), stage_stacks
    assert any("mlops-prod-model-abalone" in n for n in stage_stacks), stage_stacks
    assert not any("-serving-" in n for n in stage_stacks), stage_stacks
