"""The REST API (API Gateway) :class:`~mlops_constructs.lambda_inference.LambdaInference` can put in front of its
alias."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from mlops_constructs import compliance

API_STAGE = "live"
API_RESOURCE = "predict"


def rest_api(
    scope: Construct,
    alias: lambda_.IFunction,
    log_key: kms.IKey,
    max_batch_rows: int,
    rate: float,
    burst: int,
    log_retention: logs.RetentionDays,
    removal_policy: RemovalPolicy,
) -> tuple[apigw.RestApi, logs.LogGroup]:
    """``POST /predict`` on stage ``live`` in front of ``alias``: IAM auth, request validation, throttling, access
    logs (in ``scope``: ``ApiAccessLogs``, ``Api``)."""
    access_logs = logs.LogGroup(
        scope, "ApiAccessLogs", retention=log_retention, encryption_key=log_key, removal_policy=removal_policy
    )
    api = apigw.RestApi(
        scope,
        "Api",
        description="Model inference (IAM-authenticated)",
        endpoint_types=[apigw.EndpointType.REGIONAL],
        # The CloudWatch role is an account-wide API Gateway setting; a serving stack must not change it.
        cloud_watch_role=False,
        deploy_options=apigw.StageOptions(
            stage_name=API_STAGE,
            access_log_destination=apigw.LogGroupLogDestination(access_logs),
            access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                caller=True,
                http_method=True,
                ip=True,
                protocol=True,
                request_time=True,
                resource_path=True,
                response_length=True,
                status=True,
                user=True,
            ),
            tracing_enabled=True,
            metrics_enabled=True,
            throttling_rate_limit=rate,
            throttling_burst_limit=burst,
        ),
        default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM),
    )
    row = apigw.JsonSchema(type=apigw.JsonSchemaType.OBJECT, min_properties=1)
    request_model = api.add_model(
        "PredictionRequest",
        content_type="application/json",
        description='{"instances": [row, ...]} or {"instance": row}',
        schema=apigw.JsonSchema(
            schema=apigw.JsonSchemaVersion.DRAFT4,
            title="PredictionRequest",
            type=apigw.JsonSchemaType.OBJECT,
            additional_properties=False,
            properties={
                "instances": apigw.JsonSchema(
                    type=apigw.JsonSchemaType.ARRAY, items=row, min_items=1, max_items=max_batch_rows
                ),
                "instance": row,
            },
            min_properties=1,
            max_properties=1,
        ),
    )
    validator = api.add_request_validator(
        "RequestValidator", validate_request_body=True, validate_request_parameters=True
    )
    api.root.add_resource(API_RESOURCE).add_method(
        "POST",
        apigw.LambdaIntegration(alias),
        authorization_type=apigw.AuthorizationType.IAM,
        request_validator=validator,
        request_models={"application/json": request_model},
    )
    compliance.acknowledge(
        api,
        "AwsSolutions-APIG3",
        "Every method requires SigV4 (IAM) authorization and the stage is throttled; associate a WAFv2 web ACL "
        "with the stage when the API is reachable by untrusted networks.",
    )
    compliance.acknowledge(
        api,
        "AwsSolutions-APIG6",
        "Execution logging needs the account-wide API Gateway CloudWatch role, which this stack must not change; "
        "access logs (with retention) and X-Ray tracing are on, and the function logs every request.",
    )
    compliance.acknowledge(
        api,
        "AwsSolutions-COG4",
        "Callers are AWS principals (services, pipelines) authorized by IAM (SigV4), not end users of a Cognito "
        "user pool.",
    )
    return api, access_logs
