"""Serving: RealtimeEndpoint, LambdaInference and ServingStack, synthesized ONCE for this module (with cdk-nag).

One app holds the data stack and four serving variants:
- ``staging``: dev config, model abalone, stage staging (instances, model-mode Lambda);
- ``proxy``: prod config (endpoint_proxy Lambda, linear traffic shifting, 2+ instances), stage prod;
- ``serverless``: dev config with a serverless endpoint and no Lambda;
- ``api``: a LambdaInference alone with the optional REST API (its own key, default log settings).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
import aws_cdk.cx_api as cx_api
import cfnlint.api
import pytest
from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

from mlops_constructs import compliance
from mlops_constructs.lambda_inference import LambdaInference
from stacks.code_locations import INFERENCE_CODE as DEFAULT_CODE_DIR, INFERENCE_DEPENDENCIES as DEFAULT_DEPENDENCIES_DIR
from mlops_constructs.realtime_endpoint import EndpointAutoscaling, RealtimeEndpoint, TrafficRouting
from platform_config import PlatformConfig, load_config
from platform_config.schema import ServerlessConfig
from stacks.common import tag
from stacks.data_stack import DataStack
from stacks.serving_stack import BASELINE_PATTERN, MODEL_DATA_PATTERN, PACKAGE_ARN_PATTERN, ServingStack

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_UNZIPPED_LIMIT_MB = 250  # function code + layers, Lambda quota


@dataclass
class Variant:
    config: PlatformConfig
    stack: cdk.Stack
    template: dict
    messages: list

    def resources(self, cfn_type: str) -> dict[str, dict]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == cfn_type}

    def one(self, cfn_type: str) -> tuple[str, dict]:
        found = self.resources(cfn_type)
        assert len(found) == 1, (cfn_type, sorted(found))
        return next(iter(found.items()))

    def inference_function(self) -> tuple[str, dict]:
        """The inference function (the stage may also have the drift and ground-truth functions)."""
        found = {k: v for k, v in self.resources("AWS::Lambda::Function").items()
                 if v["Properties"].get("Handler") == "app.handler"}
        assert len(found) == 1, sorted(found)
        return next(iter(found.items()))

    def statements(self):
        for res in self.resources("AWS::IAM::Policy").values():
            yield from res["Properties"]["PolicyDocument"]["Statement"]


@dataclass
class Served:
    outdir: Path
    variants: dict[str, Variant]
    report: dict

    def __getitem__(self, name: str) -> Variant:
        return self.variants[name]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Served:
    outdir = tmp_path_factory.mktemp("cdk-serving")
    dev, prod = load_config("dev"), load_config("prod")
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    # Reference assets in place instead of copying the ~90 MB layer into every test's cloud assembly.
    context["aws:cdk:disable-asset-staging"] = True
    app = cdk.App(outdir=str(outdir), context=context)
    data = DataStack(app, "mlops-dev-data", config=dev)
    tag(data, dev)

    stacks: dict[str, tuple[PlatformConfig, cdk.Stack]] = {}

    def serving(name: str, config: PlatformConfig, model, stage) -> None:
        stack_id = f"{config.prefix()}-serving-{model.name}-{stage.name}"
        stack = ServingStack(app, stack_id, config=config, model=model, stage=stage, lake_refs=data.lake_refs)
        tag(stack, config, model.name)
        stacks[name] = (config, stack)

    # dev.yaml ships all_at_once for its one instance; ask for a canary here to exercise the fallback.
    abalone = dev.models[0].model_copy(
        update={"endpoint": dev.models[0].endpoint.model_copy(update={"traffic_shifting": "canary"})}
    )
    serving("staging", dev, abalone, abalone.stages[0])
    prod_model = prod.models[0]
    serving("proxy", prod, prod_model, prod_model.stages[-1])
    sls_model = abalone.model_copy(
        update={
            "name": "abalone-sls",
            "endpoint": abalone.endpoint.model_copy(update={"serverless": ServerlessConfig(memory_mb=3072)}),
            "lambda_": abalone.lambda_.model_copy(update={"enabled": False}),
        }
    )
    serving("serverless", dev, sls_model, abalone.stages[0])

    api_stack = cdk.Stack(app, "serving-api-example")
    inference = LambdaInference(
        api_stack,
        "Inference",
        code_dir=DEFAULT_CODE_DIR,
        dependencies_dir=DEFAULT_DEPENDENCIES_DIR,
        mode="model",
        model_s3_uri="s3://example-models/models/abalone/v1/model.tar.gz",
        model_encryption_key=kms.Key(api_stack, "ModelKey", enable_key_rotation=True),
        api_gateway=True,
    )
    caller = iam.Role(api_stack, "Caller", assumed_by=iam.AccountRootPrincipal())
    inference.grant_invoke_url(caller)
    inference.grant_invoke_api(caller)
    compliance.acknowledge_wildcard_resources(
        caller, inference.invoke_resource_arns[1:],
        "Test caller: invokes the inference function's qualifiers (versions and the live alias) through its URL.",
    )
    stacks["api"] = (dev, api_stack)

    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        assembly = app.synth()
    except RuntimeError as exc:  # nag findings fail synthesis: show the report
        report = outdir / "validation-report.json"
        raise AssertionError(f"serving synth failed: {exc}\n{report.read_text() if report.exists() else ''}") from None
    variants = {}
    for name, (config, stack) in stacks.items():
        artifact = assembly.get_stack_by_name(stack.stack_name)
        template = json.loads(Path(artifact.template_full_path).read_text())
        variants[name] = Variant(config, stack, template, list(artifact.messages))
    report_path = outdir / "validation-report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {"pluginReports": []}
    return Served(outdir=outdir, variants=variants, report=report)


def _ref(logical_id: str) -> dict:
    return {"Ref": logical_id}


def _resources(statement: dict) -> list:
    res = statement["Resource"]
    return res if isinstance(res, list) else [res]


def _actions(statement: dict) -> list:
    act = statement["Action"]
    return act if isinstance(act, list) else [act]


# --- endpoint ---------------------------------------------------------------------------------------------------------
def _rollback_alarms(variant: Variant) -> dict[str, dict]:
    _, endpoint = variant.one("AWS::SageMaker::Endpoint")
    names = endpoint["Properties"]["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    alarms = variant.resources("AWS::CloudWatch::Alarm")
    found = {}
    for entry in names:
        logical_id = entry["AlarmName"]["Ref"]
        found[logical_id] = alarms[logical_id]["Properties"]
    return found


def test_endpoint_blue_green_linear_with_auto_rollback_on_5xx_rate_and_p99_latency(served):
    prod = served["proxy"]
    _, endpoint = prod.one("AWS::SageMaker::Endpoint")
    props = endpoint["Properties"]
    assert props["EndpointName"] == "mlops-prod-abalone-prod"
    policy = props["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 600,
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 10},
    }
    assert policy["TerminationWaitInSeconds"] == 300
    # 10 steps of 10 minutes + 5 minutes final bake + 30 minutes of provisioning headroom, within SageMaker's 4 h.
    assert policy["MaximumExecutionTimeoutInSeconds"] == 10 * 600 + 300 + 1800

    alarms = _rollback_alarms(prod)
    assert len(alarms) == 2
    by_metric = {}
    for alarm in alarms.values():
        if "Metrics" in alarm:  # the 5xx rate: metric math over Invocation5XXErrors / Invocations
            names = {m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m}
            assert names == {"Invocation5XXErrors", "Invocations"}
            for m in alarm["Metrics"]:
                if "MetricStat" in m:
                    dims = {d["Name"]: d["Value"] for d in m["MetricStat"]["Metric"]["Dimensions"]}
                    assert dims == {"EndpointName": "mlops-prod-abalone-prod", "VariantName": "AllTraffic"}
            by_metric["5xx"] = alarm
        else:
            by_metric[alarm["MetricName"]] = alarm
    assert by_metric["5xx"]["Threshold"] == prod.config.models[0].alarms.endpoint_5xx_rate_percent
    latency = by_metric["ModelLatency"]
    assert latency["ExtendedStatistic"] == "p99" and latency["Namespace"] == "AWS/SageMaker"
    assert latency["Threshold"] == prod.config.models[0].alarms.model_latency_p99_ms * 1000  # microseconds


def test_single_instance_canary_falls_back_to_all_at_once_with_bake_and_rollback(served):
    staging = served["staging"]
    _, endpoint = staging.one("AWS::SageMaker::Endpoint")
    routing = endpoint["Properties"]["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600}
    latency = [a for a in _rollback_alarms(staging).values() if a.get("MetricName") == "ModelLatency"]
    assert latency[0]["Threshold"] == 300_000  # dev.yaml: model_latency_p99_ms 300
    warnings = [str(m.entry.data) for m in staging.messages if m.level == cx_api.SynthesisMessageLevel.WARNING]
    assert any("canary traffic shifting needs at least 2 instances" in w for w in warnings), warnings


def test_endpoint_config_is_unnamed_encrypted_and_captures_data(served):
    for name, percent, stage in (("staging", 100, "staging"), ("proxy", 20, "prod")):
        variant = served[name]
        _, config = variant.one("AWS::SageMaker::EndpointConfig")
        props = config["Properties"]
        assert "EndpointConfigName" not in props  # replaced on every new model: blue/green runs
        assert props["KmsKeyId"] == {"Fn::ImportValue": "mlops-dev-lake-key-arn"}
        capture = props["DataCaptureConfig"]
        assert capture["EnableCapture"] is True
        assert capture["InitialSamplingPercentage"] == percent
        assert capture["KmsKeyId"] == {"Fn::ImportValue": "mlops-dev-lake-key-arn"}
        assert capture["CaptureContentTypeHeader"] == {
            "CsvContentTypes": ["text/csv"],
            "JsonContentTypes": ["application/json"],
        }
        assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
        assert capture["DestinationS3Uri"]["Fn::Join"][1][-1] == f"/data-capture/abalone/{stage}"
        (variant_props,) = props["ProductionVariants"]
        assert variant_props["VariantName"] == "AllTraffic"
        assert variant_props["InstanceType"] == variant.config.models[0].endpoint.instance_type
        assert variant_props["InitialInstanceCount"] == variant.config.models[0].endpoint.initial_instance_count

        model_id, model = variant.one("AWS::SageMaker::Model")
        assert "ModelName" not in model["Properties"]
        assert model["Properties"]["Containers"] == [{"ModelPackageName": _ref("ModelPackageArn")}]
        # The package carries its inference code in model.tar.gz (code/): the container needs no network.
        assert model["Properties"]["EnableNetworkIsolation"] is True
        assert variant_props["ModelName"] == {"Fn::GetAtt": [model_id, "ModelName"]}


def test_autoscaling_tracks_invocations_per_instance_within_config_bounds(served):
    for name in ("staging", "proxy"):
        variant = served[name]
        scaling = variant.config.models[0].endpoint.autoscaling
        target_id, target = variant.one("AWS::ApplicationAutoScaling::ScalableTarget")
        props = target["Properties"]
        assert (props["MinCapacity"], props["MaxCapacity"]) == (scaling.min_capacity, scaling.max_capacity)
        assert props["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
        assert props["ServiceNamespace"] == "sagemaker"
        assert "RoleARN" not in props  # Application Auto Scaling's service-linked role
        endpoint_id, _ = variant.one("AWS::SageMaker::Endpoint")
        assert props["ResourceId"] == {
            "Fn::Join": ["", ["endpoint/", {"Fn::GetAtt": [endpoint_id, "EndpointName"]}, "/variant/AllTraffic"]]
        }
        _, policy = variant.one("AWS::ApplicationAutoScaling::ScalingPolicy")
        tracking = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        assert policy["Properties"]["ScalingTargetId"] == _ref(target_id)
        assert tracking["PredefinedMetricSpecification"] == {
            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
        }
        assert tracking["TargetValue"] == scaling.target_invocations_per_instance
    assert served["proxy"].one("AWS::ApplicationAutoScaling::ScalableTarget")[1]["Properties"]["MinCapacity"] == 2


def test_serverless_variant_has_no_autoscaling_capture_or_guardrails(served):
    variant = served["serverless"]
    _, config = variant.one("AWS::SageMaker::EndpointConfig")
    (production,) = config["Properties"]["ProductionVariants"]
    assert production["ServerlessConfig"] == {"MemorySizeInMB": 3072, "MaxConcurrency": 5}
    assert "InstanceType" not in production
    assert "DataCaptureConfig" not in config["Properties"]
    _, endpoint = variant.one("AWS::SageMaker::Endpoint")
    assert "DeploymentConfig" not in endpoint["Properties"]
    assert not variant.resources("AWS::ApplicationAutoScaling::ScalableTarget")
    assert not variant.resources("AWS::Lambda::Function")
    assert set(variant.template["Outputs"]) == {"EndpointName", "DeployedBaselineStatisticsUrl", "DeployedBaselineConstraintsUrl"}
    assert "ModelDataUrl" not in variant.template["Parameters"]  # no Lambda: CloudFormation would flag it unused
    warnings = [str(m.entry.data) for m in variant.messages if m.level == cx_api.SynthesisMessageLevel.WARNING]
    assert any("serverless endpoints capture no data" in w for w in warnings), warnings


def test_endpoint_role_reads_only_the_model_prefix_and_writes_only_the_capture_prefix(served):
    variant = served["staging"]
    role_id, _ = next(
        (k, v) for k, v in variant.resources("AWS::IAM::Role").items() if k.startswith("EndpointExecutionRole")
    )
    (policy,) = [
        p for p in variant.resources("AWS::IAM::Policy").values() if p["Properties"]["Roles"] == [_ref(role_id)]
    ]
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    artifacts = {"Fn::ImportValue": "mlops-dev-lake-artifacts-arn"}
    assert statements["ModelArtifacts"]["Action"] == "s3:GetObject"
    assert statements["ModelArtifacts"]["Resource"] == {"Fn::Join": ["", [artifacts, "/models/abalone/*"]]}
    assert statements["DataCapture"]["Action"] == "s3:PutObject"
    assert statements["DataCapture"]["Resource"] == {"Fn::Join": ["", [artifacts, "/data-capture/abalone/staging/*"]]}
    assert "SourceCode" not in statements  # the inference code is inside model.tar.gz, no CDK asset is read
    assert statements["PullFrameworkImages"]["Resource"]["Fn::Join"][1][-1] == ":*:repository/sagemaker-xgboost"
    assert statements["EcrToken"]["Action"] == "ecr:GetAuthorizationToken"
    assert statements["InstanceMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}
    }
    for statement in statements.values():
        assert not any(a.endswith("*") for a in _actions(statement)), statement


def test_endpoint_role_may_describe_exactly_its_rollback_alarms(served):
    """Deployment guardrails: the execution role needs cloudwatch:DescribeAlarms on the auto-rollback alarms."""
    for name in ("staging", "proxy"):
        variant = served[name]
        statements = [s for s in variant.statements() if s.get("Sid") == "RollbackAlarms"]
        assert len(statements) == 1, name
        (statement,) = statements
        assert statement["Action"] == "cloudwatch:DescribeAlarms"
        alarm_ids = set(_rollback_alarms(variant))
        assert {r["Fn::GetAtt"][0] for r in statement["Resource"]} == alarm_ids
        assert all(r["Fn::GetAtt"][1] == "Arn" for r in statement["Resource"])
    assert not [s for s in served["serverless"].statements() if s.get("Sid") == "RollbackAlarms"]


def test_updates_keep_the_autoscaled_fleet_size(served):
    """A deployment must not reset a fleet autoscaling grew (prod: up to 6) to initial_instance_count (2)."""
    for name in ("staging", "proxy"):
        _, endpoint = served[name].one("AWS::SageMaker::Endpoint")
        props = endpoint["Properties"]
        assert props["RetainAllVariantProperties"] is True, name
        assert "ExcludeRetainedVariantProperties" not in props, name
    _, serverless = served["serverless"].one("AWS::SageMaker::Endpoint")
    assert "RetainAllVariantProperties" not in serverless["Properties"]


def test_fixed_fleet_takes_the_configured_instance_count_on_update(scratch):
    stack, _, _ = scratch
    endpoint = _endpoint(scratch, initial_instance_count=2, traffic_routing=TrafficRouting.all_at_once())
    props = stack.resolve(endpoint.endpoint._cfn_properties)
    assert props["retainAllVariantProperties"] is True
    assert props["excludeRetainedVariantProperties"] == [{"variantPropertyType": "DesiredInstanceCount"}]


# --- Lambda -----------------------------------------------------------------------------------------------------------
def test_function_runtime_layer_tracing_and_environment(served):
    variant = served["staging"]
    function_id, function = variant.inference_function()
    props = function["Properties"]
    assert props["Runtime"] == "python3.12" and props["Handler"] == "app.handler"
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["ReservedConcurrentExecutions"] == 10
    layer_id, layer = variant.one("AWS::Lambda::LayerVersion")
    assert props["Layers"] == [_ref(layer_id)]
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert props["FunctionName"] == "mlops-dev-abalone-staging"  # contract C1: the smoke test calls this name
    env = props["Environment"]["Variables"]
    assert env["INFERENCE_MODE"] == "model"
    assert env["MODEL_S3_URI"] == _ref("ModelDataUrl")
    assert env["MODEL_VERSION"] == {"Fn::Select": [1, {"Fn::Split": [":model-package/", _ref("ModelPackageArn")]}]}
    assert env["POWERTOOLS_SERVICE_NAME"] == "mlops-dev-abalone-staging"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "MLOpsPlatform/Inference"
    assert env["POWERTOOLS_LOG_LEVEL"] == env["LOG_LEVEL"] == "INFO" and env["MAX_BATCH_ROWS"] == "1000"
    groups = variant.resources("AWS::Logs::LogGroup")
    assert props["LoggingConfig"]["LogGroup"]["Ref"] in groups
    # A new package changes the version's description, so CloudFormation publishes a version CodeDeploy shifts to.
    _, version = variant.one("AWS::Lambda::Version")
    assert version["Properties"]["Description"] == {"Fn::Join": ["", ["model: model ", env["MODEL_VERSION"]]]}
    assert version["Properties"]["FunctionName"] == _ref(function_id)


def test_alias_function_url_and_codedeploy_with_alarms_and_rollback(served):
    for name, deployment in (("staging", "CodeDeployDefault.LambdaCanary10Percent5Minutes"),
                             ("proxy", "CodeDeployDefault.LambdaCanary10Percent5Minutes")):
        variant = served[name]
        version_id, _ = variant.one("AWS::Lambda::Version")
        alias_id, alias = variant.one("AWS::Lambda::Alias")
        assert alias["Properties"]["Name"] == "live"
        assert alias["Properties"]["FunctionVersion"] == {"Fn::GetAtt": [version_id, "Version"]}
        update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
        group_id, group = variant.one("AWS::CodeDeploy::DeploymentGroup")
        assert update["DeploymentGroupName"] == _ref(group_id)

        _, url = variant.one("AWS::Lambda::Url")
        assert url["Properties"]["AuthType"] == "AWS_IAM"
        assert url["Properties"]["Qualifier"] == "live"
        assert variant.template["Outputs"]["FunctionUrl"]["Value"]["Fn::GetAtt"][1] == "FunctionUrl"

        props = group["Properties"]
        assert props["DeploymentConfigName"] == deployment
        assert props["AutoRollbackConfiguration"]["Enabled"] is True
        assert "DEPLOYMENT_STOP_ON_ALARM" in props["AutoRollbackConfiguration"]["Events"]
        assert props["AlarmConfiguration"]["Enabled"] is True
        alarms = variant.resources("AWS::CloudWatch::Alarm")
        rollback = [alarms[a["Name"]["Ref"]]["Properties"] for a in props["AlarmConfiguration"]["Alarms"]]
        thresholds = variant.config.models[0].alarms
        errors = [a for a in rollback if a.get("MetricName") == "Errors"]
        duration = [a for a in rollback if a.get("MetricName") == "Duration"]
        insights = [a for a in rollback if "Metrics" in a]
        assert errors[0]["Threshold"] == thresholds.lambda_errors
        assert {d["Name"]: d["Value"] for d in errors[0]["Dimensions"]}["Resource"]["Fn::Join"][1][-1] == ":live"
        assert duration[0]["ExtendedStatistic"] == "p99"
        assert duration[0]["Threshold"] == thresholds.lambda_duration_p99_ms
        (query,) = insights[0]["Metrics"]
        assert query["Expression"].startswith("SELECT SUM(ServerErrors) FROM \"MLOpsPlatform/Inference\"")
        assert query["Period"] == 60
        throttles = [a["Properties"] for a in alarms.values() if a["Properties"].get("MetricName") == "Throttles"]
        assert throttles[0]["Threshold"] == thresholds.lambda_throttles
    assert served["proxy"].one("AWS::Lambda::Alias")[1]["Properties"]["ProvisionedConcurrencyConfig"] == {
        "ProvisionedConcurrentExecutions": 2
    }


def test_model_mode_reads_exactly_the_model_object(served):
    (statement,) = [s for s in served["staging"].statements() if s.get("Sid") == "ModelObject"]
    assert statement["Action"] == "s3:GetObject"
    assert statement["Resource"] == {
        "Fn::Join": ["", ["arn:", _ref("AWS::Partition"), ":s3:::",
                          {"Fn::Select": [1, {"Fn::Split": ["s3://", _ref("ModelDataUrl")]}]}]]
    }
    assert not [s for s in served["staging"].statements() if "sagemaker:InvokeEndpoint" in _actions(s)]


def test_endpoint_proxy_invokes_exactly_the_endpoint_arn(served):
    variant = served["proxy"]
    endpoint_id, _ = variant.one("AWS::SageMaker::Endpoint")
    invoking = [s for s in variant.statements() if any(a.startswith("sagemaker:") for a in _actions(s))]
    assert invoking == [
        {"Action": "sagemaker:InvokeEndpoint", "Effect": "Allow", "Resource": _ref(endpoint_id),
         "Sid": "InvokeEndpoint"}
    ]
    _, function = variant.inference_function()
    env = function["Properties"]["Environment"]["Variables"]
    assert env["INFERENCE_MODE"] == "endpoint_proxy"
    assert env["ENDPOINT_NAME"] == "mlops-prod-abalone-prod"
    assert env["MODEL_METADATA_S3_URI"] == _ref("ModelDataUrl")
    assert "MODEL_S3_URI" not in env


def test_rest_api_is_iam_authorized_validated_throttled_and_logged(served):
    variant = served["api"]
    methods = variant.resources("AWS::ApiGateway::Method")
    (post,) = [m["Properties"] for m in methods.values() if m["Properties"]["HttpMethod"] == "POST"]
    assert post["AuthorizationType"] == "AWS_IAM"
    validator_id, validator = variant.one("AWS::ApiGateway::RequestValidator")
    assert post["RequestValidatorId"] == _ref(validator_id)
    assert validator["Properties"]["ValidateRequestBody"] is True
    model_id, model = variant.one("AWS::ApiGateway::Model")
    assert post["RequestModels"] == {"application/json": _ref(model_id)}
    assert model["Properties"]["Schema"]["properties"]["instances"]["maxItems"] == 1000
    assert post["Integration"]["Type"] == "AWS_PROXY"
    _, stage = variant.one("AWS::ApiGateway::Stage")
    stage_props = stage["Properties"]
    assert stage_props["StageName"] == "live" and stage_props["TracingEnabled"] is True
    (settings,) = stage_props["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (50, 100)
    groups = variant.resources("AWS::Logs::LogGroup")
    assert stage_props["AccessLogSetting"]["DestinationArn"]["Fn::GetAtt"][0] in groups
    assert not variant.resources("AWS::ApiGateway::Account")  # no account-wide CloudWatch role change


def test_grants_to_call_the_function_url_and_the_api(served):
    variant = served["api"]
    function_id, _ = variant.inference_function()
    api_id, _ = variant.one("AWS::ApiGateway::RestApi")
    statements = {tuple(_actions(s)): s for s in variant.statements()}
    # The function and its qualifiers (versions, the live alias): Function URLs need both actions on them.
    function_arn = {"Fn::GetAtt": [function_id, "Arn"]}
    qualifiers = [function_arn, {"Fn::Join": ["", [function_arn, ":*"]]}]
    url = statements[("lambda:InvokeFunctionUrl",)]
    assert url["Resource"] == qualifiers
    assert url["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}
    via_url = statements[("lambda:InvokeFunction",)]
    assert via_url["Resource"] == qualifiers
    assert via_url["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": True}}
    (resource,) = _resources(statements[("execute-api:Invoke",)])
    parts = resource["Fn::Join"][1]
    assert _ref(api_id) in parts and parts[-1] == "/live/POST/predict"


# --- stack interface --------------------------------------------------------------------------------------------------
def test_parameters_and_outputs_for_the_deploy_pipeline(served):
    for name in ("staging", "proxy", "serverless"):
        template = served[name].template
        package = template["Parameters"]["ModelPackageArn"]
        assert package["Type"] == "String" and "Default" not in package  # no placeholder: a deploy must pass it
        assert package["AllowedPattern"] == PACKAGE_ARN_PATTERN
    assert set(served["staging"].template["Outputs"]) >= {"EndpointName", "FunctionUrl"}
    for name in ("staging", "proxy"):
        data_url = served[name].template["Parameters"]["ModelDataUrl"]
        assert data_url["AllowedPattern"] == MODEL_DATA_PATTERN and "Default" not in data_url
    # Contract C2: the package's baseline, with a default so that a first deploy (and synth) needs none.
    for name in ("staging", "proxy", "serverless"):
        for param in ("BaselineStatisticsUrl", "BaselineConstraintsUrl"):
            declared = served[name].template["Parameters"][param]
            assert declared["Default"] == "none" and declared["AllowedPattern"] == BASELINE_PATTERN, (name, param)
    assert re.match(BASELINE_PATTERN, "none")
    assert re.match(BASELINE_PATTERN, "s3://mlops-dev-artifacts/models/abalone/pipelines-x/baseline/statistics.json")
    assert not re.match(BASELINE_PATTERN, "s3://bucket/prefix/")
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/mlops-dev-abalone/3"
    assert re.match(PACKAGE_ARN_PATTERN, arn)
    assert not re.match(PACKAGE_ARN_PATTERN, "arn:aws:sagemaker:eu-west-1:123456789012:model/abalone")
    assert re.match(MODEL_DATA_PATTERN, "s3://mlops-dev-artifacts/models/abalone/pipelines-x/output/model.tar.gz")
    assert not re.match(MODEL_DATA_PATTERN, "s3://bucket/prefix/")


def test_every_log_group_has_retention_and_a_customer_key(served):
    for name, variant in served.variants.items():
        expected = variant.config.log_retention_days if name != "api" else 90  # construct default
        groups = variant.resources("AWS::Logs::LogGroup")
        assert groups, name
        for logical_id, group in groups.items():
            assert group["Properties"]["RetentionInDays"] == expected, (name, logical_id)
            assert "KmsKeyId" in group["Properties"], (name, logical_id)
    endpoint_logs = [g for g in served["staging"].resources("AWS::Logs::LogGroup").values()
                     if g["Properties"].get("LogGroupName")]
    assert endpoint_logs[0]["Properties"]["LogGroupName"] == "/aws/sagemaker/Endpoints/mlops-dev-abalone-staging"


# --- compliance -------------------------------------------------------------------------------------------------------
def test_nag_passes_and_serving_acknowledgements_are_specific(served):
    assert [v for r in served.report["pluginReports"] for v in r.get("violations", [])] == []
    suppressed = [
        v for r in served.report["pluginReports"] for v in r.get("suppressedViolations", [])
        if any("serving" in c["constructPath"] for c in v["violatingConstructs"])
    ]
    rules = {v["ruleName"] for v in suppressed}
    assert "AwsSolutions-L1" in rules and "AwsSolutions-APIG3" in rules
    for violation in suppressed:
        assert len(violation["reason"]) >= 40, violation


def test_cfn_lint_reports_no_errors(served):
    errors = []
    for variant in served.variants.values():
        path = served.outdir / f"{variant.stack.stack_name}.template.json"
        matches = cfnlint.api.lint_file(path, cfnlint.api.ManualArgs(regions=["us-east-1"]))
        errors += [f"{variant.stack.stack_name}: {m}" for m in matches if m.rule.severity == "error"]
    assert errors == []


def test_no_broad_iam(served):
    for name, variant in served.variants.items():
        text = json.dumps(variant.template)
        assert "FullAccess" not in text and "arn:aws:s3:::*" not in text, name
        for statement in variant.statements():
            assert not {"*", "s3:*", "sagemaker:*", "lambda:*"} & set(_actions(statement)), (name, statement)


def test_code_and_layer_fit_lambda_limits():
    def size(root: Path, skip=lambda p: False) -> int:
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not skip(p))

    code = size(DEFAULT_CODE_DIR, lambda p: "__pycache__" in p.parts or "tests" in p.parts)
    import zipfile

    with zipfile.ZipFile(DEFAULT_DEPENDENCIES_DIR) as archive:  # the layer as uploaded: its unzipped size
        layer = sum(info.file_size for info in archive.infolist())
    assert layer > 1_000_000, "the layer looks empty: rebuild it with `make install`"
    assert (code + layer) / 1e6 < LAMBDA_UNZIPPED_LIMIT_MB


# --- construct validation (no synthesis) ------------------------------------------------------------------------------
@pytest.fixture()
def scratch():
    stack = cdk.Stack(cdk.App(), "Scratch")
    key = kms.Key.from_key_arn(stack, "Key", "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-12345678")
    bucket = s3.Bucket.from_bucket_name(stack, "Artifacts", "mlops-dev-artifacts")
    return stack, key, bucket


def _endpoint(scratch, **props):
    stack, key, bucket = scratch
    base = dict(
        model_package_arn="arn:aws:sagemaker:eu-west-1:123456789012:model-package/g/1",
        endpoint_name="mlops-dev-abalone-staging",
        encryption_key=key,
        model_artifacts_bucket=bucket,
    )
    return RealtimeEndpoint(stack, "Endpoint", **{**base, **props})


def test_serverless_refuses_blue_green(scratch):
    with pytest.raises(ValueError) as err:
        _endpoint(scratch, serverless=(2048, 5), traffic_routing=TrafficRouting.canary(10))
    assert str(err.value) == (
        "RealtimeEndpoint: blue/green traffic shifting with auto-rollback (deployment guardrails) is for "
        "instance-based endpoints; a serverless endpoint is updated all at once. Remove traffic_routing, or use "
        "instances"
    )


def test_autoscaling_max_below_min_is_refused(scratch):
    with pytest.raises(ValueError) as err:
        _endpoint(scratch, initial_instance_count=2, autoscaling=EndpointAutoscaling(min_capacity=2, max_capacity=1))
    assert str(err.value) == "RealtimeEndpoint autoscaling max_capacity (1) must be at least min_capacity (2)"


def test_canary_on_a_single_instance_is_refused(scratch):
    with pytest.raises(ValueError) as err:
        _endpoint(scratch, traffic_routing=TrafficRouting.canary(10))
    assert str(err.value) == (
        "RealtimeEndpoint: canary traffic shifting needs a fleet of at least 2 instances (SageMaker caps each step at "
        "50% of the instances), but the fleet can be 1; use TrafficRouting.all_at_once() or more instances"
    )


def test_too_long_deployment_is_refused(scratch):
    with pytest.raises(ValueError, match="outside SageMaker's 600-14400 s execution timeout"):
        _endpoint(scratch, initial_instance_count=2, traffic_routing=TrafficRouting.linear(10, Duration.minutes(30)))


def test_lambda_without_dependency_layer_fails_with_instructions(scratch, tmp_path):
    stack, _, _ = scratch
    with pytest.raises(FileNotFoundError, match=r"Build it with `make install`"):
        LambdaInference(stack, "Inference", mode="model", model_s3_uri="s3://b/m.tar.gz", dependencies_dir=tmp_path,
                        code_dir=DEFAULT_CODE_DIR)


def test_endpoint_proxy_needs_the_endpoint(scratch):
    stack, _, _ = scratch
    with pytest.raises(ValueError) as err:
        LambdaInference(stack, "Inference", mode="endpoint_proxy", model_metadata_s3_uri="s3://b/m.tar.gz",
                        code_dir=DEFAULT_CODE_DIR, dependencies_dir=DEFAULT_DEPENDENCIES_DIR)
    assert str(err.value) == "LambdaInference mode 'endpoint_proxy' needs endpoint_name, endpoint_arn"


def test_provisioned_above_reserved_concurrency_is_refused(scratch):
    stack, _, _ = scratch
    with pytest.raises(ValueError) as err:
        LambdaInference(stack, "Inference", mode="model", model_s3_uri="s3://b/m.tar.gz",
                        reserved_concurrency=2, provisioned_concurrency=3, code_dir=DEFAULT_CODE_DIR,
                        dependencies_dir=DEFAULT_DEPENDENCIES_DIR)
    assert str(err.value) == "LambdaInference provisioned_concurrency (3) cannot exceed reserved_concurrency (2)"


def test_data_quality_monitor_uses_the_package_baseline_once_one_is_passed(served):
    """Contract C2: the baseline comes in as parameters; without one (the default) there is no schedule to fail."""
    for name in ("staging", "proxy"):
        variant = served[name]
        template = variant.template
        condition = template["Conditions"]["HasBaseline"]
        assert json.dumps(condition).count('"none"') == 2
        (job_id, job), = variant.resources("AWS::SageMaker::DataQualityJobDefinition").items()
        baseline = job["Properties"]["DataQualityBaselineConfig"]
        assert baseline["StatisticsResource"]["S3Uri"] == _ref("BaselineStatisticsUrl")
        assert baseline["ConstraintsResource"]["S3Uri"] == _ref("BaselineConstraintsUrl")
        (schedule_id, schedule), = [
            (k, v) for k, v in variant.resources("AWS::SageMaker::MonitoringSchedule").items()
            if v["Properties"]["MonitoringScheduleConfig"]["MonitoringType"] == "DataQuality"
        ]  # model quality (models[].model_quality) has its own schedule, which needs no baseline
        endpoint_id, _ = variant.one("AWS::SageMaker::Endpoint")
        # Every resource of the monitor, and nothing else, exists only with a baseline.
        conditioned = {k for k, v in template["Resources"].items() if v.get("Condition") == "HasBaseline"}
        assert {job_id, schedule_id} <= conditioned and endpoint_id not in conditioned
        # (and drift retraining, on the last stage: it reads the monitor's reports)
        assert all("DataQuality" in k or "DriftRetraining" in k for k in conditioned), conditioned
        # The monitor's role reads exactly the two baseline objects.
        (baselines,) = [s for s in variant.statements() if s.get("Sid") == "Baselines"]
        assert baselines["Action"] == "s3:GetObject"
        assert json.dumps(baselines["Resource"]).count('"Ref": "BaselineStatisticsUrl"') == 1
        assert json.dumps(baselines["Resource"]).count('"Ref": "BaselineConstraintsUrl"') == 1
        # A new package (a new baseline) gives the replace-only job definition a new name.
        assert "ModelPackageArn" in json.dumps(job["Properties"]["JobDefinitionName"])
        config = schedule["Properties"]["MonitoringScheduleConfig"]
        assert config["MonitoringJobDefinitionName"] == job["Properties"]["JobDefinitionName"]
    assert not served["serverless"].resources("AWS::SageMaker::MonitoringSchedule")  # no capture, no monitor


def test_app_serving_stacks_monitor_data_quality_and_notify_failures_except_no_data(dev):
    for stage in ("staging", "prod"):
        template = dev.template(f"serving-abalone-{stage}")
        schedules = [r["Properties"]["MonitoringScheduleConfig"]["MonitoringType"] for r in template["Resources"].values()
                     if r["Type"] == "AWS::SageMaker::MonitoringSchedule"]
        assert sorted(schedules) == ["DataQuality", "ModelQuality"]  # dev.yaml: abalone's model_quality is on
        (job,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::SageMaker::DataQualityJobDefinition"]
        assert job["Properties"]["DataQualityJobInput"]["EndpointInput"]["EndpointName"] == f"mlops-dev-abalone-{stage}"
        (rule,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Events::Rule"
                   and "Processing Job" in json.dumps(r["Properties"]["EventPattern"])
                   and "FailureReason" in json.dumps(r["Properties"]["EventPattern"])
                   and r.get("Condition") == "HasBaseline"]  # not the drift rule, not model quality's
        assert rule["Condition"] == "HasBaseline"
        detail = rule["Properties"]["EventPattern"]["detail"]
        assert detail["FailureReason"] == [{"anything-but": {"prefix": "Job inputs had no data"}}]
        assert "mlops-dev-alarm-topic-arn" in json.dumps(rule["Properties"]["Targets"])


def test_drift_retrains_from_the_last_stage_only_with_its_cooldown(dev):
    """Drift on production traffic (the last stage) starts the build pipeline; staging's monitor does not (the two
    hourly monitors would race). Only with a baseline, like the monitor."""
    abalone = dev.config.models[0]
    for stage, expected in (("staging", 0), ("prod", 1)):
        template = dev.template(f"serving-abalone-{stage}")
        functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
                     and r["Properties"].get("Handler") == "drift_handler.handler"]
        assert len(functions) == expected, stage
    (function,) = functions
    assert function["Condition"] == "HasBaseline"
    env = function["Properties"]["Environment"]["Variables"]
    assert str(abalone.retraining.cooldown_hours * 3600) in json.dumps(env)
    assert "mlops-dev-abalone" in json.dumps(env)


def test_idle_endpoint_alarm_notifies_and_never_rolls_back(dev):
    hours = dev.config.models[0].alarms.idle_endpoint_hours
    template = dev.template("serving-abalone-prod")
    (idle,) = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"
               and r["Properties"].get("MetricName") == "Invocations"]
    assert (idle["Statistic"], idle["Period"], idle["EvaluationPeriods"], idle["Threshold"]) == ("Sum", 3600, hours, 1)
    assert (idle["ComparisonOperator"], idle["TreatMissingData"]) == ("LessThanThreshold", "breaching")
    assert "mlops-dev-alarm-topic-arn" in json.dumps(idle["AlarmActions"])
    (endpoint,) = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::SageMaker::Endpoint"]
    assert "Idle" not in json.dumps(endpoint["DeploymentConfig"])  # rollback alarms are the 5xx and latency ones


def test_deploy_script_and_serving_stacks_agree_on_names(dev, tmp_path):
    """What cicd_scripts.deploy_serving passes and reads, configured as the model stack's deploy CD configures it
    (ENDPOINT_ENABLED, LAMBDA_MODE), is what each serving stack declares and outputs: an endpoint-and-Lambda model
    (abalone) and a Lambda-only one (breast-cancer, no EndpointName output, no baseline parameters)."""
    from cicd_scripts import deploy_serving

    checked = set()
    for part, stack in dev.stacks.items():
        if not part.startswith("serving-"):
            continue
        model, stage = part[len("serving-"):].rsplit("-", 1)
        assert stack.stack_name == deploy_serving.serving_stack_name("mlops", "dev", model, stage)
        template = dev.templates[stack.stack_name]
        # The deploy CD's Deploy-<stage> and Smoke-<stage> projects in the model stack.
        projects = [r["Properties"] for r in dev.resources(f"model-{model}", "AWS::CodeBuild::Project").values()]
        envs = [{v["Name"]: v["Value"] for v in p["Environment"].get("EnvironmentVariables", [])} for p in projects]
        (deploy_env,) = [e for e in envs if e.get("STAGE") == stage and "ENDPOINT_ENABLED" in e]
        (smoke_env,) = [e for e in envs if e.get("STAGE") == stage and "SERVING_STACK" in e]
        assert smoke_env["SERVING_STACK"] == stack.stack_name
        assert (deploy_env["PROJECT"], deploy_env["ENVIRONMENT"], deploy_env["MODEL"]) == ("mlops", "dev", model)
        endpoint, lambda_mode = deploy_env["ENDPOINT_ENABLED"] == "true", deploy_env["LAMBDA_MODE"]
        config = next(m for m in dev.config.models if m.name == model)
        assert endpoint == config.endpoint.enabled
        assert lambda_mode == (config.lambda_.mode if config.lambda_.enabled else "none")
        # Parameters: exactly the ones the script passes for this configuration (every resolved value given).
        passed = deploy_serving.serving_parameters(
            endpoint=endpoint, lambda_mode=lambda_mode, model_data_url="s3://b/model.tar.gz",
            baseline_statistics_url="s3://b/statistics.json", baseline_constraints_url="s3://b/constraints.json")
        assert set(template["Parameters"]) - {"BootstrapVersion"} == {
            deploy_serving.MODEL_PACKAGE_PARAMETER, *passed}, stack.stack_name
        # Outputs: the smoke targets of this configuration, and no other.
        outputs = set(template["Outputs"])
        assert (deploy_serving.ENDPOINT_OUTPUT in outputs) == endpoint, stack.stack_name
        assert (deploy_serving.FUNCTION_URL_OUTPUT in outputs) == (lambda_mode != "none"), stack.stack_name
        outputs_file = tmp_path / f"{stack.stack_name}.json"
        outputs_file.write_text(json.dumps({stack.stack_name: {k: f"value-of-{k}" for k in outputs}}))
        targets = deploy_serving.read_targets(str(outputs_file), stack.stack_name, endpoint=endpoint,
                                              function=lambda_mode != "none")
        assert targets == {
            "endpoint_name": f"value-of-{deploy_serving.ENDPOINT_OUTPUT}" if endpoint else None,
            "function_url": f"value-of-{deploy_serving.FUNCTION_URL_OUTPUT}" if lambda_mode != "none" else None,
        }
        checked.add((model, stage, endpoint, lambda_mode))
    # Both dev models, staging and prod: one with an endpoint and a Lambda, one Lambda only.
    assert checked == {("abalone", "staging", True, "model"), ("abalone", "prod", True, "model"),
                       ("breast-cancer", "staging", False, "model"), ("breast-cancer", "prod", False, "model")}
