"""Model CI/CD (ModelBuildCi, ModelDeployCd), the model registry and the platform's self-mutating pipeline.

One app, synthesized once for the module with the cdk-nag AwsSolutions plugin (a finding fails the synth), holds:
- ``CicdConnection``: registry shared with two accounts, build CI and deploy CD on a CodeConnections source;
- ``CicdS3``: the S3 source fallback, an upserting and waiting build CI, a cross-account, cross-region prod stage;
- ``PlatformPipeline`` (CodeConnections) and ``PlatformPipelineS3``: dev in the pipeline account, prod in another.
"""

from __future__ import annotations

from functools import partial

import json
import re
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
import cfnlint.api
import pytest
import yaml
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks

from mlops_constructs import compliance
from mlops_constructs import model_cicd
from mlops_constructs.model_cicd import DeployStage, deploy_build_timeout
from platform_config.names import Names
from stacks import code_locations as code
from stacks.cicd_props import build_ci_names, deploy_cd_names

# The constructs take their buildspecs and physical names as props (they never look for the repository nor derive a
# name); these tests use the platform's.
NAMES = Names("mlops", "dev")
ModelBuildCi = partial(model_cicd.ModelBuildCi, buildspec=code.MODEL_BUILD_BUILDSPEC,
                       names=build_ci_names(NAMES, "abalone"))
ModelDeployCd = partial(model_cicd.ModelDeployCd, buildspecs=code.BUILDSPECS, names=deploy_cd_names(NAMES, "abalone"))
from mlops_constructs.model_registry import ModelRegistry
from mlops_constructs.pipeline_grants import SageMakerPipelineReference
from platform_config import load_config
from platform_config.schema import SourceRepoConfig
from stacks.platform_pipeline_stack import PlatformPipelineStack

ROOT = Path(__file__).resolve().parents[2]
PIPELINE_ACCOUNT = "111111111111"
PROD_ACCOUNT = "222222222222"
TRUSTED = ["222222222222", "333333333333"]
OTHER_ACCOUNT = "444444444444"
REGION = "us-east-1"
CONNECTION = f"arn:aws:codeconnections:{REGION}:{PIPELINE_ACCOUNT}:connection/0a1b2c3d-4e5f-6789-abcd-ef0123456789"
REPOSITORY = "acme/mlops-platform"
GROUP = "mlops-dev-abalone"
SMOKE_ROLE = f"arn:aws:iam::{OTHER_ACCOUNT}:role/mlops-smoke-test"
CICD_STACKS = ("CicdConnection", "CicdS3")
PLATFORM_STACKS = ("PlatformPipeline", "PlatformPipelineS3")


@dataclass
class Synth:
    outdir: Path
    app: cdk.App
    templates: dict[str, dict]  # artifact id -> template (nested stage assemblies included)
    constructs: dict

    def resources(self, stack: str, cfn_type: str) -> dict[str, dict]:
        return {k: v for k, v in self.templates[stack]["Resources"].items() if v["Type"] == cfn_type}

    def one(self, stack: str, cfn_type: str, contains: str = "") -> tuple[str, dict]:
        found = [(k, v) for k, v in self.resources(stack, cfn_type).items() if contains in k]
        assert len(found) == 1, (cfn_type, contains, [k for k, _ in found])
        return found[0]


def _env_stacks(stage: cdk.Stage, config) -> None:
    """A small stand-in for the app builder's stack factory: a key and a file asset (so the pipeline publishes it)."""
    stack = cdk.Stack(stage, f"{config.prefix()}-shared", stack_name=f"{config.prefix()}-shared")
    kms.Key(stack, "Key", enable_key_rotation=True)
    s3_assets.Asset(stack, "Buildspec", path=str(ROOT / "buildspecs" / "model_build.yml"))


def _topic(stack: cdk.Stack, id_: str) -> sns.Topic:
    return sns.Topic(stack, id_, master_key=kms.Key(stack, f"{id_}Key", enable_key_rotation=True), enforce_ssl=True)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Synth:
    outdir = tmp_path_factory.mktemp("cdk-cicd")
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    app = cdk.App(outdir=str(outdir), context=context)
    env = cdk.Environment(account=PIPELINE_ACCOUNT, region=REGION)
    c: dict = {}

    # --- CodeConnections source --------------------------------------------------------------------------------
    conn = cdk.Stack(app, "CicdConnection", env=env)
    alarms = _topic(conn, "Alarms")
    approvals = _topic(conn, "Approvals")
    c["registry"] = ModelRegistry(conn, "Registry", model_package_group_name=GROUP, trusted_accounts=TRUSTED)
    c["approver"] = iam.Role(conn, "Approver", assumed_by=iam.AccountRootPrincipal())
    c["registry"].grant_approve(c["approver"])
    c["build"] = ModelBuildCi(
        conn, "BuildCi", sagemaker_pipeline=SageMakerPipelineReference.from_pipeline_name(conn, GROUP),
        connection_arn=CONNECTION, repository=REPOSITORY, trigger_file_paths=["sagemaker_steps/**"],
        alarm_topic=alarms, pipeline_stack_name="mlops-dev-model-abalone",
    )
    c["deploy"] = ModelDeployCd(
        conn, "DeployCd", project="mlops", environment="dev", model_name="abalone", registry=c["registry"],
        stages=["staging", "prod"], alarm_topic=alarms, approval_topic=approvals,
        connection_arn=CONNECTION, repository=REPOSITORY, smoke_sample_file="data/smoke_sample.json",
    )
    c["alarms"], c["approvals"] = alarms, approvals

    # --- S3 source fallback, upsert + wait, cross-account prod ---------------------------------------------------
    s3stack = cdk.Stack(app, "CicdS3", env=env)
    alarms_s3 = _topic(s3stack, "Alarms")
    artifacts = s3.Bucket(s3stack, "ModelArtifacts", encryption=s3.BucketEncryption.KMS, enforce_ssl=True)
    compliance.acknowledge(artifacts, "AwsSolutions-S1", "Test stand-in for the data lake's artifacts bucket, which "
                           "logs to the lake's access-log bucket; only its name and key matter here.")
    pipeline_role = iam.Role(s3stack, "SageMakerPipelineRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    c["build_s3"] = ModelBuildCi(
        s3stack, "BuildCi",
        sagemaker_pipeline=SageMakerPipelineReference.from_pipeline_name(s3stack, GROUP, role=pipeline_role),
        definition_file="build/pipeline-definition.json",
        wait_for_execution=True, wait_timeout=cdk.Duration.minutes(45),
    )
    c["deploy_s3"] = ModelDeployCd(
        s3stack, "DeployCd", project="mlops", environment="dev", model_name="abalone",
        registry=ModelRegistry(s3stack, "Registry", model_package_group_name=GROUP),
        stages=["staging", DeployStage("prod", account=OTHER_ACCOUNT, region="eu-west-1", smoke_role_arn=SMOKE_ROLE)],
        alarm_topic=alarms_s3, source_bucket=c["build_s3"].source_bucket,
        model_artifacts_bucket=artifacts, model_artifacts_key_pattern="models/abalone/*",
    )
    c["pipeline_role"], c["artifacts"] = pipeline_role, artifacts

    # --- the platform pipeline ---------------------------------------------------------------------------------
    dev = load_config("dev").model_copy(update={"account": PIPELINE_ACCOUNT, "region": REGION})
    prod = load_config("prod").model_copy(update={"account": PROD_ACCOUNT, "region": REGION})
    with_connection = dev.model_copy(
        update={"source": SourceRepoConfig(connection_arn=CONNECTION, repository=REPOSITORY, branch="main")}
    )
    c["platform"] = PlatformPipelineStack(
        app, "PlatformPipeline", config=with_connection, build_stacks=_env_stacks, environment_configs=[dev, prod],
        env=env,
    )
    c["platform_s3"] = PlatformPipelineStack(
        app, "PlatformPipelineS3", config=dev, build_stacks=_env_stacks, environment_configs=[dev, prod], env=env,
    )

    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        assembly = app.synth()
    except RuntimeError as exc:  # cdk-nag findings fail synthesis: show the report
        report = outdir / "validation-report.json"
        raise AssertionError(f"synth failed: {exc}\n{report.read_text() if report.exists() else ''}") from None

    templates: dict[str, dict] = {}

    def collect(asm) -> None:
        for st in asm.stacks:
            templates[st.id] = json.loads(Path(st.template_full_path).read_text())
        for nested in asm.nested_assemblies:
            collect(nested.nested_assembly)

    collect(assembly)
    return Synth(outdir=outdir, app=app, templates=templates, constructs=c)


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------
def _pipeline(synth: Synth, stack: str, name_part: str) -> dict:
    return synth.one(stack, "AWS::CodePipeline::Pipeline", name_part)[1]["Properties"]


def _stages(pipeline: dict) -> list[str]:
    return [s["Name"] for s in pipeline["Stages"]]


def _stage(pipeline: dict, name: str) -> dict:
    (stage,) = [s for s in pipeline["Stages"] if s["Name"] == name]
    return stage


def _statements(synth: Synth, stack: str, policy_part: str) -> list[dict]:
    _, policy = synth.one(stack, "AWS::IAM::Policy", policy_part)
    return policy["Properties"]["PolicyDocument"]["Statement"]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _by_sid(statements: list[dict], sid: str) -> dict:
    (statement,) = [s for s in statements if s.get("Sid") == sid]
    return statement


def _render(value) -> str:
    """A template value as one string (Refs and GetAtts as <...>, joins flattened), for readable assertions."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Ref":
            return f"<{arg}>"
        if fn == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>"
        if fn == "Fn::Join":
            return arg[0].join(_render(p) for p in arg[1])
        if fn == "Fn::Sub":
            return arg if isinstance(arg, str) else arg[0]
    return json.dumps(value, sort_keys=True)


def _actions_all(synth: Synth, stack: str) -> list[dict]:
    return [a for p in synth.resources(stack, "AWS::CodePipeline::Pipeline").values()
            for s in p["Properties"]["Stages"] for a in s["Actions"]]


# ---------------------------------------------------------------------------------------------------------------
# compliance gates
# ---------------------------------------------------------------------------------------------------------------
def test_cdk_nag_passes_with_no_unacknowledged_finding(synth):
    report = synth.outdir / "validation-report.json"
    if report.exists():
        data = json.loads(report.read_text())
        assert [v for r in data["pluginReports"] for v in r.get("violations", [])] == []
    assert set(CICD_STACKS + PLATFORM_STACKS) <= set(synth.templates)
    # The environment stacks of each pipeline stage are synthesized (and checked) too.
    assert any("PlatformPipelineprod" in name for name in synth.templates)


def test_cfn_lint_reports_no_errors(synth):
    errors = []
    for path in sorted(synth.outdir.rglob("*.template.json")):
        matches = cfnlint.api.lint_file(path, cfnlint.api.ManualArgs(regions=[REGION]))
        errors += [f"{path.name}: {m}" for m in matches if m.rule.severity == "error"]
    assert errors == []


def test_every_acknowledgement_names_a_specific_reason(synth):
    reasons = {}
    for stack_id in CICD_STACKS + PLATFORM_STACKS:
        stack = synth.app.node.find_child(stack_id)
        for child in stack.node.find_all():
            for entry in child.node.metadata:
                if "acknowledge" in str(entry.type).lower():
                    reasons.update(entry.data)
    assert len(reasons) > 10
    for rule, reason in reasons.items():
        assert rule.startswith("AwsSolutions::AwsSolutions-"), rule
        assert len(reason) >= 40 and "TODO" not in reason, (rule, reason)


def test_no_full_access_policies_all_buckets_or_star_actions(synth):
    for name in CICD_STACKS + PLATFORM_STACKS:
        template = synth.templates[name]
        text = json.dumps(template)
        assert "FullAccess" not in text and "arn:aws:s3:::*" not in text, name
        for res in template["Resources"].values():
            doc = res.get("Properties", {}).get("PolicyDocument")
            for statement in (doc or {}).get("Statement", []):
                if statement["Effect"] == "Allow":
                    actions = _as_list(statement["Action"])
                    assert "*" not in actions and not any(a.endswith(":*") for a in actions), (name, statement)


# ---------------------------------------------------------------------------------------------------------------
# pipelines: V2, stage order, approval, variables
# ---------------------------------------------------------------------------------------------------------------
def test_every_pipeline_is_codepipeline_v2(synth):
    for name in CICD_STACKS + PLATFORM_STACKS:
        pipelines = synth.resources(name, "AWS::CodePipeline::Pipeline")
        assert pipelines, name
        for logical_id, p in pipelines.items():
            assert p["Properties"]["PipelineType"] == "V2", logical_id


def test_deploy_pipeline_stages_in_order_with_approval_before_prod(synth):
    for stack in CICD_STACKS:
        deploy = _pipeline(synth, stack, "DeployCdPipeline")
        assert deploy["Name"] == "mlops-dev-abalone-deploy"
        assert _stages(deploy) == [
            "Source", "Resolve", "Deploy-staging", "Smoke-staging", "Approve-prod", "Deploy-prod", "Smoke-prod",
        ]
        (approval,) = _stage(deploy, "Approve-prod")["Actions"]
        assert approval["ActionTypeId"] == {"Category": "Approval", "Owner": "AWS", "Provider": "Manual", "Version": "1"}
        assert "#{Resolve.MODEL_PACKAGE_ARN}" in approval["Configuration"]["CustomData"]
    (approval,) = _stage(_pipeline(synth, "CicdConnection", "DeployCdPipeline"), "Approve-prod")["Actions"]
    topic_id, _ = synth.one("CicdConnection", "AWS::SNS::Topic", "Approvals")
    assert approval["Configuration"]["NotificationArn"] == {"Ref": topic_id}


def _pipeline_role_statements(synth: Synth, stack: str) -> list[dict]:
    return [s for k, v in synth.resources(stack, "AWS::IAM::Policy").items()
            if "DeployCdPipelineRole" in k for s in v["Properties"]["PolicyDocument"]["Statement"]]


def test_manual_approval_notifies_a_topic_the_pipeline_role_may_publish_to(synth):
    # No approval_topic: the alarm topic. The role publishes to it and may use its KMS key (SSE-KMS topic).
    for stack, topic_part in (("CicdS3", "Alarms"), ("CicdConnection", "Approvals")):
        (approval,) = _stage(_pipeline(synth, stack, "DeployCdPipeline"), "Approve-prod")["Actions"]
        topic_id, _ = synth.one(stack, "AWS::SNS::Topic", topic_part)
        key_id, _ = synth.one(stack, "AWS::KMS::Key", f"{topic_part}Key")
        assert approval["Configuration"]["NotificationArn"] == {"Ref": topic_id}, stack
        statements = _pipeline_role_statements(synth, stack)
        assert any("sns:Publish" in _as_list(s["Action"]) and s["Resource"] == {"Ref": topic_id}
                   for s in statements), stack
        kms_actions = {a for s in statements for a in _as_list(s["Action"])
                       if s["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]}}
        assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= kms_actions, stack


def test_imported_alarm_topic_key_is_granted_for_the_approval():
    stack = _stack()
    key = kms.Key.from_key_arn(stack, "K", f"arn:aws:kms:{REGION}:{PIPELINE_ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    topic = sns.Topic.from_topic_arn(stack, "T", f"arn:aws:sns:{REGION}:{PIPELINE_ACCOUNT}:alarms")
    ModelDeployCd(stack, "Cd", project="mlops", environment="dev", model_name="abalone", registry=_registry(stack),
                  stages=["staging", "prod"], alarm_topic=topic, alarm_topic_key=key, connection_arn=CONNECTION,
                  repository=REPOSITORY, smoke_sample_file="data/sample.json")
    template = Template.from_stack(stack).to_json()
    statements = [s for k, v in template["Resources"].items() if v["Type"] == "AWS::IAM::Policy"
                  and "CdPipelineRole" in k for s in v["Properties"]["PolicyDocument"]["Statement"]]
    assert any(s["Resource"] == key.key_arn and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(_as_list(s["Action"]))
               for s in statements)
    assert any(s["Resource"] == topic.topic_arn and "sns:Publish" in _as_list(s["Action"]) for s in statements)


def test_resolve_exports_variables_that_deploy_and_smoke_consume(synth):
    deploy = _pipeline(synth, "CicdConnection", "DeployCdPipeline")
    (resolve,) = _stage(deploy, "Resolve")["Actions"]
    assert resolve["Namespace"] == "Resolve"
    for stage in ("staging", "prod"):
        (dep,) = _stage(deploy, f"Deploy-{stage}")["Actions"]
        (smoke,) = _stage(deploy, f"Smoke-{stage}")["Actions"]
        # the package, its model.tar.gz and its Model Monitor baseline (contract C2); deploy_serving passes each
        # only when the serving stack declares it
        assert json.loads(dep["Configuration"]["EnvironmentVariables"]) == [
            {"name": name, "type": "PLAINTEXT", "value": f"#{{Resolve.{name}}}"}
            for name in ("MODEL_PACKAGE_ARN", "MODEL_DATA_URL", "BASELINE_STATISTICS_URL", "BASELINE_CONSTRAINTS_URL")
        ]
        assert dep["OutputArtifacts"] == [{"Name": f"Targets_{stage}"}]
        assert [a["Name"] for a in smoke["InputArtifacts"]] == ["Source", f"Targets_{stage}"]
        assert json.loads(smoke["Configuration"]["EnvironmentVariables"]) == [
            {"name": "MODEL_DATA_URL", "type": "PLAINTEXT", "value": "#{Resolve.MODEL_DATA_URL}"}
        ]
    spec = yaml.safe_load((ROOT / "buildspecs" / "model_resolve.yml").read_text())
    assert {"PACKAGE_FOUND", "MODEL_PACKAGE_ARN", "MODEL_DATA_URL", "BASELINE_STATISTICS_URL",
            "BASELINE_CONSTRAINTS_URL"} <= set(spec["env"]["exported-variables"])
    _, project = synth.one("CicdConnection", "AWS::CodeBuild::Project", "DeployCdDeployStaging")
    env = {v["Name"]: v["Value"] for v in project["Properties"]["Environment"]["EnvironmentVariables"]}
    assert (env["ENDPOINT_ENABLED"], env["LAMBDA_MODE"]) == ("true", "model")


def test_stages_after_resolve_are_skipped_when_no_package_is_approved(synth):
    """The run CodePipeline starts at creation finds no approved package: Resolve succeeds, the rest is skipped."""
    for stack in CICD_STACKS:
        deploy = _pipeline(synth, stack, "DeployCdPipeline")
        for stage in deploy["Stages"]:
            if stage["Name"] in ("Source", "Resolve"):
                assert "BeforeEntry" not in stage, stage["Name"]
                continue
            (condition,) = stage["BeforeEntry"]["Conditions"]
            assert condition["Result"] == "SKIP", stage["Name"]
            (rule,) = condition["Rules"]
            assert rule["RuleTypeId"] == {"Category": "Rule", "Owner": "AWS", "Provider": "VariableCheck",
                                          "Version": "1"}
            assert rule["Configuration"] == {"Variable": "#{Resolve.PACKAGE_FOUND}", "Value": "true",
                                             "Operator": "EQ"}
    spec = yaml.safe_load((ROOT / "buildspecs" / "model_resolve.yml").read_text())
    assert "--none-is-ok" in spec["phases"]["build"]["commands"][0]


def test_build_pipeline_tests_then_starts_the_sagemaker_pipeline(synth):
    build = _pipeline(synth, "CicdConnection", "BuildCiPipeline")
    assert build["Name"] == "mlops-dev-abalone-build"
    assert _stages(build) == ["Source", "Build"]
    _, project = synth.one("CicdConnection", "AWS::CodeBuild::Project", "BuildCiBuild")
    commands = json.loads(project["Properties"]["Source"]["BuildSpec"])["phases"]["build"]["commands"]
    assert commands[0] == "python -m pytest tests/runtime/test_sagemaker_steps.py"
    assert "python -m cicd_scripts.start_pipeline" in commands[1] and '--git-commit "$commit"' in commands[1]
    env = {v["Name"]: v["Value"] for v in project["Properties"]["Environment"]["EnvironmentVariables"]}
    assert env["SAGEMAKER_PIPELINE_NAME"] == GROUP
    assert env["PIPELINE_STACK"] == "mlops-dev-model-abalone"
    assert env["WAIT"] == "false" and env["DEFINITION_FILE"] == ""


# ---------------------------------------------------------------------------------------------------------------
# EventBridge rules
# ---------------------------------------------------------------------------------------------------------------
def test_approval_event_starts_the_deploy_pipeline(synth):
    for stack in CICD_STACKS:
        rules = {k: v for k, v in synth.resources(stack, "AWS::Events::Rule").items() if "OnApproved" in k}
        (rule,) = rules.values()
        assert rule["Properties"]["EventPattern"] == {
            "source": ["aws.sagemaker"],
            "detail-type": ["SageMaker Model Package State Change"],
            "detail": {"ModelPackageGroupName": [GROUP], "ModelApprovalStatus": ["Approved"]},
        }
        (target,) = rule["Properties"]["Targets"]
        deploy_id, _ = synth.one(stack, "AWS::CodePipeline::Pipeline", "DeployCdPipeline")
        assert f"<{deploy_id}>" in _render(target["Arn"]) and "RoleArn" in target


def test_failed_executions_notify_the_alarm_topic(synth):
    rules = {k: v for k, v in synth.resources("CicdConnection", "AWS::Events::Rule").items() if "OnFailed" in k}
    assert len(rules) == 2  # build CI and deploy CD
    alarms_id, _ = synth.one("CicdConnection", "AWS::SNS::Topic", "Alarms")
    for rule in rules.values():
        pattern = rule["Properties"]["EventPattern"]
        assert pattern["source"] == ["aws.codepipeline"]
        assert pattern["detail-type"] == ["CodePipeline Pipeline Execution State Change"]
        # not the run CodePipeline starts when it creates the pipeline (empty S3 source, nothing approved yet)
        assert pattern["detail"] == {
            "state": ["FAILED"],
            "$or": [
                {"execution-trigger": {"trigger-type": [{"anything-but": ["CreatePipeline"]}]}},
                {"execution-trigger": {"trigger-type": [{"exists": False}]}},
            ],
        }
        (target,) = rule["Properties"]["Targets"]
        assert target["Arn"] == {"Ref": alarms_id}
    # The S3 fallback build CI has no alarm topic: only its deploy CD notifies.
    assert len([k for k in synth.resources("CicdS3", "AWS::Events::Rule") if "OnFailed" in k]) == 1


# ---------------------------------------------------------------------------------------------------------------
# CodeBuild projects, logs, buckets, keys
# ---------------------------------------------------------------------------------------------------------------
def test_codebuild_projects_encrypted_unprivileged_logging_to_retained_groups(synth):
    for stack in CICD_STACKS:
        projects = synth.resources(stack, "AWS::CodeBuild::Project")
        assert len(projects) == 6  # build; resolve; deploy and smoke for staging and prod
        groups = synth.resources(stack, "AWS::Logs::LogGroup")
        for logical_id, project in projects.items():
            props = project["Properties"]
            assert "EncryptionKey" in props, logical_id
            environment = props["Environment"]
            assert environment["PrivilegedMode"] is False, logical_id
            assert environment["Image"] == "aws/codebuild/standard:7.0", logical_id
            assert environment["ComputeType"] == "BUILD_GENERAL1_SMALL", logical_id
            assert 5 <= props["TimeoutInMinutes"] <= 480, logical_id
            cw = props["LogsConfig"]["CloudWatchLogs"]
            assert cw["Status"] == "ENABLED"
            group = groups[cw["GroupName"]["Ref"]]["Properties"]
            assert group["RetentionInDays"] == 90 and "KmsKeyId" in group, logical_id
    for stack in PLATFORM_STACKS:
        (group,) = synth.resources(stack, "AWS::Logs::LogGroup").values()
        assert group["Properties"]["RetentionInDays"] == 30 and "KmsKeyId" in group["Properties"]
        for logical_id, project in synth.resources(stack, "AWS::CodeBuild::Project").items():
            assert "EncryptionKey" in project["Properties"], logical_id
            assert project["Properties"]["Environment"]["PrivilegedMode"] is False, logical_id
            assert project["Properties"]["LogsConfig"]["CloudWatchLogs"]["Status"] == "ENABLED", logical_id


@pytest.mark.parametrize("part,spec", [
    ("BuildCiBuild", "model_build.yml"), ("DeployCdResolve", "model_resolve.yml"),
    ("DeployCdDeployStaging", "model_deploy.yml"), ("DeployCdSmokeProd", "model_smoke.yml"),
])
def test_buildspecs_are_inlined_from_the_repository_files(synth, part, spec):
    _, project = synth.one("CicdConnection", "AWS::CodeBuild::Project", part)
    assert json.loads(project["Properties"]["Source"]["BuildSpec"]) == yaml.safe_load(
        (ROOT / "buildspecs" / spec).read_text()
    )


def test_buckets_are_kms_encrypted_private_tls_only_and_retained(synth):
    for stack in CICD_STACKS + PLATFORM_STACKS:
        policies = synth.resources(stack, "AWS::S3::BucketPolicy")
        buckets = synth.resources(stack, "AWS::S3::Bucket")
        # artifacts (x2); + source and the test's model artifacts; platform: access logs, artifacts (+ source)
        assert len(buckets) == {"CicdConnection": 2, "CicdS3": 4, "PlatformPipeline": 2}.get(stack, 3), stack
        for logical_id, bucket in buckets.items():
            if logical_id.startswith("ModelArtifacts"):
                continue  # the test's stand-in
            props = bucket["Properties"]
            assert props["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True, logical_id
            if "AccessLogs" not in logical_id:
                sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
                assert sse["SSEAlgorithm"] == "aws:kms", logical_id
            assert bucket["DeletionPolicy"] == "Retain", logical_id
            (policy,) = [p for p in policies.values() if p["Properties"]["Bucket"] == {"Ref": logical_id}]
            assert any(s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
                       for s in policy["Properties"]["PolicyDocument"]["Statement"]), logical_id
    for stack in PLATFORM_STACKS:
        for logical_id, bucket in synth.resources(stack, "AWS::S3::Bucket").items():
            if "AccessLogs" not in logical_id:
                assert "DestinationBucketName" in bucket["Properties"]["LoggingConfiguration"], logical_id


def test_pipeline_keys_rotate_and_are_retained(synth):
    for stack in CICD_STACKS + PLATFORM_STACKS:
        for logical_id, key in synth.resources(stack, "AWS::KMS::Key").items():
            assert key["Properties"]["EnableKeyRotation"] is True, logical_id
            assert key["DeletionPolicy"] == "Retain", logical_id


# ---------------------------------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------------------------------
def test_codeconnections_source_pushes_trigger_build_only(synth):
    build = _pipeline(synth, "CicdConnection", "BuildCiPipeline")
    deploy = _pipeline(synth, "CicdConnection", "DeployCdPipeline")
    for pipeline, detect in ((build, True), (deploy, False)):
        (source,) = _stage(pipeline, "Source")["Actions"]
        assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
        config = source["Configuration"]
        assert config["ConnectionArn"] == CONNECTION and config["FullRepositoryId"] == REPOSITORY
        assert config["BranchName"] == "main"
        assert config.get("DetectChanges", True) is detect
    (trigger,) = build["Triggers"]
    assert trigger["GitConfiguration"]["Push"] == [
        {"Branches": {"Includes": ["main"]}, "FilePaths": {"Includes": ["sagemaker_steps/**"]}}
    ]


def test_s3_source_fallback_shared_by_build_and_deploy(synth):
    bucket_id, bucket = synth.one("CicdS3", "AWS::S3::Bucket", "SourceBucket")
    props = bucket["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    for part in ("BuildCiPipeline", "DeployCdPipeline"):
        (source,) = _stage(_pipeline(synth, "CicdS3", part), "Source")["Actions"]
        assert source["ActionTypeId"]["Provider"] == "S3"
        assert source["Configuration"]["S3Bucket"] == {"Ref": bucket_id}
        assert source["Configuration"]["S3ObjectKey"] == "source/abalone.zip"
        assert source["Configuration"]["PollForSourceChanges"] is False
    (rule,) = [v for k, v in synth.resources("CicdS3", "AWS::Events::Rule").items() if "OnSourceUpload" in k]
    assert rule["Properties"]["EventPattern"]["detail"] == {
        "bucket": {"name": [{"Ref": bucket_id}]}, "object": {"key": ["source/abalone.zip"]},
    }
    build_id, _ = synth.one("CicdS3", "AWS::CodePipeline::Pipeline", "BuildCiPipeline")
    assert f"<{build_id}>" in _render(rule["Properties"]["Targets"][0]["Arn"])


# ---------------------------------------------------------------------------------------------------------------
# least privilege
# ---------------------------------------------------------------------------------------------------------------
def _sagemaker_and_pass_role(statements: list[dict]) -> dict[str, tuple[str, ...]]:
    """Action -> rendered resources, for the SageMaker and iam:PassRole actions of a policy."""
    return {a: tuple(sorted(_render(r) for r in _as_list(s["Resource"])))
            for s in statements for a in _as_list(s["Action"]) if a.startswith(("sagemaker:", "iam:PassRole"))}


def test_build_role_starts_exactly_one_sagemaker_pipeline(synth):
    # The pipeline's own grant_start: describe and start the one pipeline, nothing else of SageMaker's.
    arn = f"arn:<AWS::Partition>:sagemaker:{REGION}:{PIPELINE_ACCOUNT}:pipeline/{GROUP}"
    statements = _statements(synth, "CicdConnection", "BuildCiBuildRole")
    assert _sagemaker_and_pass_role(statements) == {
        "sagemaker:DescribePipeline": (arn,), "sagemaker:StartPipelineExecution": (arn,),
    }
    (start,) = [s for s in statements if "sagemaker:StartPipelineExecution" in _as_list(s["Action"])]
    assert sorted(start["Action"]) == ["sagemaker:DescribePipeline", "sagemaker:StartPipelineExecution"]

    # Upsert and wait (grant_update, grant_read_executions): UpdatePipeline, its executions, and passing only the
    # pipeline's role to SageMaker.
    statements = _statements(synth, "CicdS3", "BuildCiBuildRole")
    role_id, _ = synth.one("CicdS3", "AWS::IAM::Role", "SageMakerPipelineRole")
    executions = f"{arn}/execution/*"
    assert _sagemaker_and_pass_role(statements) == {
        "sagemaker:DescribePipeline": (arn,), "sagemaker:StartPipelineExecution": (arn,),
        "sagemaker:UpdatePipeline": (arn,),
        "sagemaker:DescribePipelineExecution": (executions,), "sagemaker:ListPipelineExecutionSteps": (executions,),
        "iam:PassRole": (f"<{role_id}.Arn>",),
    }
    (pass_role,) = [s for s in statements if "iam:PassRole" in _as_list(s["Action"])]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_deploy_roles_may_only_assume_the_stage_cdk_bootstrap_roles(synth):
    expected = {
        ("CicdConnection", "DeployCdDeployStagingRole"): ("<AWS::AccountId>", "<AWS::Region>"),
        ("CicdS3", "DeployCdDeployStagingRole"): ("<AWS::AccountId>", "<AWS::Region>"),
        ("CicdS3", "DeployCdDeployProdRole"): (OTHER_ACCOUNT, "eu-west-1"),
    }
    for (stack, policy), (account, region) in expected.items():
        statements = _statements(synth, stack, policy)
        assume = _by_sid(statements, "AssumeCdkBootstrapRoles")
        assert sorted(_render(r) for r in assume["Resource"]) == sorted(
            f"arn:<AWS::Partition>:iam::{account}:role/cdk-hnb659fds-{r}-role-{account}-{region}"
            for r in ("deploy", "file-publishing", "lookup")
        )
        non_grant = {a for s in statements for a in _as_list(s["Action"])
                     if not a.startswith(("s3:", "kms:", "logs:"))}
        assert non_grant == {"sts:AssumeRole"}, (stack, policy)


def test_smoke_roles_reach_only_their_stage(synth):
    statements = _statements(synth, "CicdConnection", "DeployCdSmokeStagingRole")
    base = "arn:<AWS::Partition>:{}:<AWS::Region>:<AWS::AccountId>:"
    assert _render(_by_sid(statements, "ServingStackStatus")["Resource"]) == (
        base.format("cloudformation") + "stack/mlops-dev-serving-abalone-staging/*"
    )
    endpoint = _by_sid(statements, "CallStageEndpoint")
    assert sorted(endpoint["Action"]) == ["sagemaker:DescribeEndpoint", "sagemaker:InvokeEndpoint"]
    assert _render(endpoint["Resource"]) == base.format("sagemaker") + "endpoint/mlops-dev-abalone-staging"
    # Contract C1: the function is named <project>-<environment>-<model>-<stage>; its URL needs both actions.
    functions = [base.format("lambda") + "function:mlops-dev-abalone-staging",
                 base.format("lambda") + "function:mlops-dev-abalone-staging:*"]
    url = _by_sid(statements, "CallStageFunctionUrl")
    assert url["Action"] == "lambda:InvokeFunctionUrl"
    assert url["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}
    assert sorted(_render(r) for r in url["Resource"]) == functions
    invoke = _by_sid(statements, "InvokeStageFunction")
    assert invoke["Action"] == "lambda:InvokeFunction"
    assert sorted(_render(r) for r in invoke["Resource"]) == functions
    # Cross-account prod: nothing in the stage account but the smoke role to assume; model data to read.
    statements = _statements(synth, "CicdS3", "DeployCdSmokeProdRole")
    assert _by_sid(statements, "AssumeStageSmokeRole")["Resource"] == SMOKE_ROLE
    assert not any(a.startswith(("sagemaker:", "lambda:", "cloudformation:"))
                   for s in statements for a in _as_list(s["Action"]))
    artifacts_id, _ = synth.one("CicdS3", "AWS::S3::Bucket", "ModelArtifacts")
    reads = [_render(r) for s in statements for r in _as_list(s["Resource"]) if artifacts_id in json.dumps(r)]
    assert f"<{artifacts_id}.Arn>/models/abalone/*" in reads


def test_resolve_role_reads_only_the_model_package_group(synth):
    statements = _statements(synth, "CicdConnection", "DeployCdResolveRole")
    sagemaker = {a: _render(s["Resource"]) for s in statements for a in _as_list(s["Action"])
                 if a.startswith("sagemaker:")}
    prefix = f"arn:<AWS::Partition>:sagemaker:{REGION}:{PIPELINE_ACCOUNT}:"
    assert sagemaker == {
        "sagemaker:DescribeModelPackageGroup": f"{prefix}model-package-group/{GROUP}",
        "sagemaker:DescribeModelPackage": f"{prefix}model-package/{GROUP}/*",
        "sagemaker:ListModelPackages": "*",  # no resource-level permission exists for it
    }
    _, project = synth.one("CicdConnection", "AWS::CodeBuild::Project", "DeployCdResolve")
    env = {v["Name"]: v["Value"] for v in project["Properties"]["Environment"]["EnvironmentVariables"]}
    assert env == {"MODEL_PACKAGE_GROUP": GROUP, "REQUIRE_BASELINE": "true"}


def test_resolve_role_reads_a_group_shared_by_another_account():
    stack = _stack()
    shared = f"arn:aws:sagemaker:eu-west-1:{OTHER_ACCOUNT}:model-package-group/Shared-Group"
    cd = ModelDeployCd(stack, "Cd", **{**_deploy_props(stack),
                                       "registry": ModelRegistry.from_model_package_group_arn(shared)})
    template = Template.from_stack(stack).to_json()
    statements = [s for k, v in template["Resources"].items() if v["Type"] == "AWS::IAM::Policy"
                  and "CdResolveRole" in k for s in v["Properties"]["PolicyDocument"]["Statement"]]
    sagemaker = {a: s["Resource"] for s in statements for a in _as_list(s["Action"]) if a.startswith("sagemaker:")}
    assert sagemaker == {
        "sagemaker:DescribeModelPackageGroup": shared,
        "sagemaker:DescribeModelPackage": f"arn:aws:sagemaker:eu-west-1:{OTHER_ACCOUNT}:model-package/shared-group/*",
        "sagemaker:ListModelPackages": "*",
    }
    project = template["Resources"][stack.get_logical_id(cd.resolve_project.node.default_child)]
    env = {v["Name"]: v["Value"] for v in project["Properties"]["Environment"]["EnvironmentVariables"]}
    assert env["MODEL_PACKAGE_GROUP"] == shared
    (rule,) = [v for k, v in template["Resources"].items() if v["Type"] == "AWS::Events::Rule" and "OnApproved" in k]
    assert rule["Properties"]["EventPattern"]["detail"]["ModelPackageGroupName"] == ["Shared-Group"]


@pytest.mark.parametrize("arn,message", [
    (f"arn:aws:sagemaker:{REGION}:{OTHER_ACCOUNT}:model-package/other/1",
     f"ModelRegistry model_package_group_arn 'arn:aws:sagemaker:{REGION}:{OTHER_ACCOUNT}:model-package/other/1' "
     "is not a model package group ARN"),
    (cdk.Fn.import_value("GroupArn"),
     "ModelRegistry model_package_group_arn must be a literal ARN (it names another account)"),
], ids=["not-a-group-arn", "token"])  # a token's text differs per process: xdist workers must collect the same ids
def test_registry_reference_validation_messages(arn, message):
    with pytest.raises(ValueError) as err:
        ModelRegistry.from_model_package_group_arn(arn)
    assert str(err.value) == message


# ---------------------------------------------------------------------------------------------------------------
# model registry
# ---------------------------------------------------------------------------------------------------------------
def test_model_package_group_policy_grants_trusted_accounts_read_only(synth):
    _, group = synth.one("CicdConnection", "AWS::SageMaker::ModelPackageGroup")
    assert group["Properties"]["ModelPackageGroupName"] == GROUP
    assert group["DeletionPolicy"] == "Retain"
    statements = group["Properties"]["ModelPackageGroupPolicy"]["Statement"]
    for statement in statements:
        principals = sorted(_render(p) for p in statement["Principal"]["AWS"])
        assert principals == [f"arn:<AWS::Partition>:iam::{a}:root" for a in TRUSTED]
    actions = {a: _render(s["Resource"]) for s in statements for a in _as_list(s["Action"])}
    prefix = f"arn:<AWS::Partition>:sagemaker:{REGION}:{PIPELINE_ACCOUNT}:"
    assert actions == {
        "sagemaker:DescribeModelPackageGroup": f"{prefix}model-package-group/{GROUP}",
        "sagemaker:DescribeModelPackage": f"{prefix}model-package/{GROUP}/*",
        "sagemaker:ListModelPackages": f"{prefix}model-package/{GROUP}/*",
    }


def test_grant_approve_updates_only_this_groups_versions(synth):
    statements = _statements(synth, "CicdConnection", "ApproverDefaultPolicy")
    assert {a for s in statements for a in _as_list(s["Action"])} == {
        "sagemaker:DescribeModelPackageGroup", "sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages",
        "sagemaker:UpdateModelPackage",
    }
    (update,) = [s for s in statements if "sagemaker:UpdateModelPackage" in _as_list(s["Action"])]
    assert _render(update["Resource"]) == f"arn:<AWS::Partition>:sagemaker:{REGION}:{PIPELINE_ACCOUNT}:model-package/{GROUP}/*"


def test_registry_on_approved_rule_and_arn():
    app = cdk.App()
    stack = cdk.Stack(app, "Registry")
    registry = ModelRegistry(stack, "Registry", model_package_group_name="Churn-Model")
    rule = registry.on_approved("OnApproved", description="approved")
    template = Template.from_stack(stack).to_json()
    (group,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::SageMaker::ModelPackageGroup"]
    assert "ModelPackageGroupPolicy" not in group["Properties"]  # no trusted accounts: no resource policy
    (rule_json,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Events::Rule"]
    assert rule_json["Properties"]["EventPattern"]["detail"] == {
        "ModelPackageGroupName": ["Churn-Model"], "ModelApprovalStatus": ["Approved"],
    }
    assert rule.node.id == "OnApproved"
    assert stack.resolve(registry.model_package_group_arn) == {
        "Fn::GetAtt": [stack.get_logical_id(registry.group), "ModelPackageGroupArn"]
    }
    assert registry.model_packages_arn.endswith("model-package/churn-model/*")  # SageMaker lower-cases ARNs


# ---------------------------------------------------------------------------------------------------------------
# the platform's self-mutating pipeline
# ---------------------------------------------------------------------------------------------------------------
def test_platform_pipeline_synthesizes_tests_and_mutates_itself(synth):
    for stack in PLATFORM_STACKS:
        pipeline = _pipeline(synth, stack, "Pipeline")
        assert pipeline["Name"] == "mlops-dev-platform"
        assert _stages(pipeline) == ["Source", "Build", "UpdatePipeline", "Assets", "dev", "prod"]
        (mutate,) = _stage(pipeline, "UpdatePipeline")["Actions"]
        assert mutate["Name"] == "SelfMutate" and mutate["ActionTypeId"]["Provider"] == "CodeBuild"
        _, synth_project = synth.one(stack, "AWS::CodeBuild::Project", "Synth")
        spec = json.loads(synth_project["Properties"]["Source"]["BuildSpec"])
        assert spec["phases"]["build"]["commands"] == ["make test PYTHON=python3", "npx cdk synth --quiet -c env=dev"]
        assert spec["artifacts"]["base-directory"] == "cdk.out"
    (source,) = _stage(_pipeline(synth, "PlatformPipeline", "Pipeline"), "Source")["Actions"]
    assert source["Configuration"]["ConnectionArn"] == CONNECTION
    (source,) = _stage(_pipeline(synth, "PlatformPipelineS3", "Pipeline"), "Source")["Actions"]
    assert source["ActionTypeId"]["Provider"] == "S3" and source["Configuration"]["S3ObjectKey"] == "source/platform.zip"


def test_platform_pipeline_approval_precedes_prod_only_and_prod_is_cross_account(synth):
    pipeline = _pipeline(synth, "PlatformPipeline", "Pipeline")
    dev, prod = _stage(pipeline, "dev")["Actions"], _stage(pipeline, "prod")["Actions"]
    assert not [a for a in dev if a["ActionTypeId"]["Category"] == "Approval"]
    (approval,) = [a for a in prod if a["ActionTypeId"]["Category"] == "Approval"]
    deploys = [a for a in prod if a["ActionTypeId"]["Category"] == "Deploy"]
    assert deploys and all(a["RunOrder"] > approval["RunOrder"] for a in deploys)
    for action in dev + deploys:
        if action["ActionTypeId"]["Category"] != "Deploy":
            continue
        account = PIPELINE_ACCOUNT if action in dev else PROD_ACCOUNT
        assert f":iam::{account}:role/cdk-hnb659fds-deploy-role-{account}-{REGION}" in _render(action["RoleArn"])
        if "RoleArn" in action["Configuration"]:  # the CloudFormation execution role, as Fn::Sub for cfn-lint
            assert action["Configuration"]["RoleArn"] == {
                "Fn::Sub": f"arn:${{AWS::Partition}}:iam::{account}:role/cdk-hnb659fds-cfn-exec-role-{account}-{REGION}"
            }
    # Prod's deploy role may read the artifacts, and decrypt them with the pipeline's key.
    (key,) = synth.resources("PlatformPipeline", "AWS::KMS::Key").values()
    principals = [_render(p) for s in key["Properties"]["KeyPolicy"]["Statement"]
                  for p in _as_list(s["Principal"].get("AWS", []))]
    assert f"arn:<AWS::Partition>:iam::{PROD_ACCOUNT}:role/cdk-hnb659fds-deploy-role-{PROD_ACCOUNT}-{REGION}" in principals


def test_platform_pipeline_stages_deploy_each_environments_stacks(synth):
    platform = synth.constructs["platform"]
    assert list(platform.stages) == ["dev", "prod"]
    assert platform.stages["prod"].account == PROD_ACCOUNT
    names = {s.stack_name for stage in platform.stages.values() for s in stage.node.children
             if isinstance(s, cdk.Stack)}
    assert names == {"mlops-dev-shared", "mlops-prod-shared"}


# ---------------------------------------------------------------------------------------------------------------
# validation (no synthesis)
# ---------------------------------------------------------------------------------------------------------------
def _stack() -> cdk.Stack:
    return cdk.Stack(cdk.App(), "Validation", env=cdk.Environment(account=PIPELINE_ACCOUNT, region=REGION))


def _pipeline_ref(stack: cdk.Stack) -> SageMakerPipelineReference:
    return SageMakerPipelineReference.from_pipeline_name(stack, GROUP)


def _registry(stack: cdk.Stack) -> ModelRegistry:
    return ModelRegistry(stack, "Registry", model_package_group_name=GROUP)


def test_upsert_needs_the_pipeline_role_message():
    stack = _stack()
    with pytest.raises(ValueError) as err:
        ModelBuildCi(stack, "Ci", sagemaker_pipeline=_pipeline_ref(stack), definition_file="definition.json")
    assert str(err.value) == (
        "ModelBuildCi definition_file needs the SageMaker pipeline's execution role (sagemaker_pipeline.role): "
        "upserting a pipeline definition passes the role the pipeline runs as"
    )


def test_build_timeout_must_exceed_the_wait_message():
    with pytest.raises(ValueError) as err:
        stack = _stack()
        ModelBuildCi(stack, "Ci", sagemaker_pipeline=_pipeline_ref(stack),
                     wait_for_execution=True, wait_timeout=cdk.Duration.minutes(60),
                     build_timeout=cdk.Duration.minutes(30))
    assert str(err.value) == (
        "ModelBuildCi build_timeout (30 minutes) must exceed wait_timeout (60 minutes), or the build is stopped "
        "before the SageMaker execution ends"
    )


@pytest.mark.parametrize("kwargs,message", [
    ({"stages": ["prod", DeployStage("prod")]}, "ModelDeployCd stage names must be unique, got ['prod', 'prod']"),
    ({"stages": [DeployStage("prod", account=OTHER_ACCOUNT)]},
     f"ModelDeployCd stage 'prod' is in account {OTHER_ACCOUNT}, not this stack's: give it a smoke_role_arn (a role "
     "there the smoke test assumes to call the endpoint and function URL)"),
    ({"smoke_sample_file": None},
     "ModelDeployCd smoke test needs sample rows: give smoke_sample_file (JSON instances in the source) or "
     "model_artifacts_bucket (to read model_metadata.json from the approved package's model data)"),
    ({"stages": [DeployStage("prod", smoke_role_arn="mlops-smoke")]},
     "ModelDeployCd stage 'prod' smoke_role_arn 'mlops-smoke' is not an IAM role ARN"),
    ({"connection_arn": None},
     "ModelDeployCd needs connection_arn and repository (owner/name) together for a CodeConnections source, or "
     "neither for the S3 source bucket"),
    ({"endpoint": False, "lambda_mode": None},
     "ModelDeployCd needs endpoint=True or a lambda_mode: the serving stacks serve nothing"),
    ({"endpoint": False, "lambda_mode": "endpoint_proxy"},
     "ModelDeployCd lambda_mode 'endpoint_proxy' calls the endpoint: set endpoint=True"),
    ({"lambda_mode": "proxy"},
     "ModelDeployCd lambda_mode must be one of ['model', 'endpoint_proxy'] or None, got 'proxy'"),
])
def test_deploy_cd_validation_messages(kwargs, message):
    stack = _stack()
    props = dict(project="mlops", environment="dev", model_name="abalone", registry=_registry(stack),
                 stages=["staging", "prod"], alarm_topic=sns.Topic(stack, "T"), connection_arn=CONNECTION,
                 repository=REPOSITORY, smoke_sample_file="data/sample.json")
    props.update(kwargs)
    with pytest.raises(ValueError) as err:
        ModelDeployCd(stack, "Cd", **props)
    assert str(err.value) == message


def _deploy_props(stack: cdk.Stack) -> dict:
    return dict(project="mlops", environment="dev", model_name="abalone", registry=_registry(stack),
                stages=["staging", "prod"], alarm_topic=sns.Topic(stack, "T"), connection_arn=CONNECTION,
                repository=REPOSITORY, smoke_sample_file="data/sample.json")


def _deploy_timeouts(cd: ModelDeployCd) -> set:
    template = Template.from_stack(cdk.Stack.of(cd)).to_json()
    return {r["Properties"]["TimeoutInMinutes"] for k, r in template["Resources"].items()
            if r["Type"] == "AWS::CodeBuild::Project" and "CdDeploy" in k}


def test_deploy_build_timeout_covers_the_serving_rollout():
    # prod: linear shifting, MaximumExecutionTimeoutInSeconds 8100, then the proxy Lambda's canary (5 min + margin)
    assert deploy_build_timeout(cdk.Duration.seconds(8100 + 900)).to_minutes() == 150 + 30
    assert deploy_build_timeout(cdk.Duration.seconds(61)).to_minutes() == 2 + 30  # whole minutes, rounded up
    stack = _stack()
    cd = ModelDeployCd(stack, "Cd", rollout_timeout=cdk.Duration.seconds(9000), **_deploy_props(stack))
    assert _deploy_timeouts(cd) == {180}
    stack = _stack()
    assert _deploy_timeouts(ModelDeployCd(stack, "Cd", **_deploy_props(stack))) == {60}  # default rollout 30 min


def test_deploy_timeout_shorter_than_the_rollout_message():
    stack = _stack()
    with pytest.raises(ValueError) as err:
        ModelDeployCd(stack, "Cd", rollout_timeout=cdk.Duration.seconds(8100), deploy_timeout=cdk.Duration.minutes(60),
                      **_deploy_props(stack))
    assert str(err.value) == (
        "ModelDeployCd deploy_timeout (60 minutes) must cover the serving rollout (135 minutes) plus install and synth "
        "(30 minutes): at least 165 minutes, or leave it unset"
    )


@pytest.mark.parametrize("endpoint,lambda_mode,sids,env", [
    (True, None, {"ServingStackStatus", "CallStageEndpoint"}, ("true", "none")),
    (False, "model", {"ServingStackStatus", "CallStageFunctionUrl", "InvokeStageFunction"}, ("false", "model")),
    (True, "endpoint_proxy", {"ServingStackStatus", "CallStageEndpoint", "CallStageFunctionUrl",
                              "InvokeStageFunction"}, ("true", "endpoint_proxy")),
])
def test_smoke_and_deploy_follow_what_the_stage_serves(endpoint, lambda_mode, sids, env):
    stack = _stack()
    ModelDeployCd(stack, "Cd", endpoint=endpoint, lambda_mode=lambda_mode, **_deploy_props(stack))
    template = Template.from_stack(stack).to_json()
    (smoke,) = [r for k, r in template["Resources"].items()
                if r["Type"] == "AWS::IAM::Policy" and k.startswith("CdSmokeStagingRole")]
    assert {s.get("Sid") for s in smoke["Properties"]["PolicyDocument"]["Statement"]} - {None} == sids
    (deploy,) = [r for k, r in template["Resources"].items()
                 if r["Type"] == "AWS::CodeBuild::Project" and k.startswith("CdDeployStaging")]
    values = {v["Name"]: v["Value"] for v in deploy["Properties"]["Environment"]["EnvironmentVariables"]}
    assert (values["ENDPOINT_ENABLED"], values["LAMBDA_MODE"]) == env


def test_registry_refuses_a_bad_trusted_account():
    with pytest.raises(ValueError, match=re.escape("ModelRegistry trusted_accounts: '1234' is not a 12-digit AWS "
                                                   "account ID")):
        ModelRegistry(_stack(), "Registry", model_package_group_name=GROUP, trusted_accounts=["1234"])


def test_platform_pipeline_refuses_configs_out_of_order():
    dev, prod = load_config("dev"), load_config("prod")
    with pytest.raises(ValueError) as err:
        PlatformPipelineStack(cdk.App(), "P", config=dev, build_stacks=_env_stacks, environment_configs=[prod, dev])
    assert str(err.value) == (
        "PlatformPipelineStack environment_configs are for ['prod', 'dev'], but platform_pipeline.environments "
        "lists ['dev', 'prod'] (same names, same order)"
    )


def test_deploy_build_timeout_covers_the_serving_rollout(synthesized):
    """The Deploy-<stage> build outlasts the serving stack's own rollout (endpoint blue/green + Lambda shift)."""
    from mlops_constructs.model_cicd import deploy_build_timeout
    from stacks.serving_stack import rollout_budget

    model = synthesized.config.models[0]
    budget = rollout_budget(model)
    projects = synthesized.resources("model-abalone", "AWS::CodeBuild::Project")
    deploy = [p for k, p in projects.items() if "Deploy" in k and "Resolve" not in k and "Smoke" not in k]
    assert deploy, sorted(projects)
    for project in deploy:
        assert project["Properties"]["TimeoutInMinutes"] == int(deploy_build_timeout(budget).to_minutes())
        assert project["Properties"]["TimeoutInMinutes"] * 60 > budget.to_seconds()
    if synthesized.config.environment == "prod":  # linear shifting, 2+ instances, endpoint_proxy canary behind it
        assert budget.to_seconds() > 8100
