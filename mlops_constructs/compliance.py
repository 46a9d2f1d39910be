"""Helpers to acknowledge cdk-nag v3 findings precisely, next to the resource, with a reason.

cdk-nag v3 acknowledges each finding by its exact ID (``AwsSolutions-IAM5[Resource::<Bucket.Arn>/prefix/*]``); there is
no prefix matching. These helpers render a resource the way cdk-nag does, so constructs can acknowledge the wildcard
they create on purpose (objects under a prefix, streams of a log group) without hard-coding logical IDs.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from aws_cdk import Acknowledgment, Stack, Token, Validations
from constructs import IConstruct

DEFAULT_QUALIFIER = "hnb659fds"


def render(scope: IConstruct, value: Any) -> str:
    """Render a (possibly tokenized) string as cdk-nag prints it in finding IDs."""
    return _render(Stack.of(scope).resolve(value))


def _render(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and len(node) == 1:
        (fn, arg), = node.items()
        if fn == "Ref":
            return f"<{arg}>"
        if fn == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>"
        if fn == "Fn::Join":
            sep, parts = arg
            return sep.join(_render(p) for p in parts)
        if fn == "Fn::ImportValue":
            return _render(arg)  # cdk-nag prints the export name
    return json.dumps(node, separators=(",", ":"))


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one finding on ``scope`` (and its children) with a specific reason."""
    acknowledge_all(scope, [rule_id], reason)


def acknowledge_all(scope: IConstruct, rule_ids: Iterable[str], reason: str) -> None:
    """Acknowledge several findings on ``scope`` with one reason, in one call (each call is a jsii round trip)."""
    if len(reason) < 20:
        raise ValueError(f"acknowledgement of {list(rule_ids)} needs a specific reason, got {reason!r}")
    acks = [
        Acknowledgment(id=f"AwsSolutions::{rule_id}" if rule_id.startswith("AwsSolutions-") else rule_id, reason=reason)
        for rule_id in rule_ids
    ]
    if acks:
        Validations.of(scope).acknowledge(*acks)


def acknowledge_wildcard_resources(scope: IConstruct, resources: Iterable[Any], reason: str) -> None:
    """Acknowledge ``AwsSolutions-IAM5`` for each resource (token or string) that ends in a deliberate wildcard."""
    acknowledge_all(scope, [f"AwsSolutions-IAM5[Resource::{render(scope, r)}]" for r in resources], reason)


def acknowledge_wildcard_actions(scope: IConstruct, actions: Iterable[str], reason: str) -> None:
    """Acknowledge ``AwsSolutions-IAM5`` for wildcard actions that CDK grant methods emit (e.g. ``s3:GetObject*``)."""
    acknowledge_all(scope, [f"AwsSolutions-IAM5[Action::{action}]" for action in actions], reason)


def asset_bucket_objects(scope: IConstruct) -> str:
    """The CDK bootstrap assets bucket's objects, as cdk-nag renders the grant L2 constructs add for assets."""
    qualifier = scope.node.try_get_context("@aws-cdk/core:bootstrapQualifier") or DEFAULT_QUALIFIER
    stack = Stack.of(scope)
    account = "<AWS::AccountId>" if Token.is_unresolved(stack.account) else stack.account
    region = "<AWS::Region>" if Token.is_unresolved(stack.region) else stack.region
    return f"arn:<AWS::Partition>:s3:::cdk-{qualifier}-assets-{account}-{region}/*"


S3_READ_ACTIONS = ("s3:GetObject*", "s3:GetBucket*", "s3:List*")
S3_WRITE_ACTIONS = ("s3:Abort*", "s3:DeleteObject*")
KMS_ACTIONS = ("kms:GenerateDataKey*", "kms:ReEncrypt*")


def checkov_skip(resource: IConstruct, checks: dict[str, str]) -> None:
    """Skip checkov checks on one CloudFormation resource, each with its reason, in the resource's metadata
    (``Metadata.checkov.skip``: checkov reads it from the template and reports the check as skipped with the comment).

    ``resource`` is the L1 (``CfnResource``) or an L2 whose ``node.default_child`` is one; ``checks`` maps a check ID
    (``CKV_AWS_18``) to why it does not apply or is accepted. Skips already on the resource are kept.
    """
    from aws_cdk import CfnResource

    cfn = resource if isinstance(resource, CfnResource) else resource.node.default_child
    if not isinstance(cfn, CfnResource):
        raise TypeError(f"checkov_skip needs a CloudFormation resource, got {resource.node.path}")
    for check, reason in checks.items():
        if not check.startswith("CKV_") or len(reason) < 20:
            raise ValueError(f"checkov skip {check!r} needs a CKV_ check ID and a specific reason, got {reason!r}")
    metadata = cfn.get_metadata("checkov") or {}
    skips = [s for s in metadata.get("skip", []) if s["id"] not in checks]
    skips += [{"id": check, "comment": reason} for check, reason in sorted(checks.items())]
    cfn.add_metadata("checkov", {**metadata, "skip": skips})


def checkov_skip_event_function(function: IConstruct, *, in_vpc: bool, invoked: str, dead_letters: IConstruct = None
                                ) -> None:
    """The checkov skips every small platform function shares, with their reasons: reserved concurrency (CKV_AWS_115),
    environment encryption (CKV_AWS_173), a VPC outside ``network.mode`` create/existing (CKV_AWS_117), a dead-letter
    queue for a synchronously invoked function (CKV_AWS_116), and SSE-SQS on its dead-letter queue (CKV_AWS_27).

    ``invoked``: ``"sync"`` (by Step Functions or a caller that gets the error) or ``"async"`` (by EventBridge: it has
    ``dead_letters``, the queue of the events it could not take).
    """
    skips = {
        "CKV_AWS_115": "Invoked at most a few times an hour by the platform's own events; reserved concurrency would "
                       "take from the account's unreserved pool, which new accounts keep at its minimum",
        "CKV_AWS_173": "The environment holds names, prefixes and settings, no secret; Lambda encrypts it at rest "
                       "with its service key",
    }
    if not in_vpc:
        skips["CKV_AWS_117"] = ("No vpc was given (network.mode none): the function calls AWS APIs over TLS with its "
                                "least-privilege role; pass vpc to run it in private subnets")
    if invoked == "sync":
        skips["CKV_AWS_116"] = ("Invoked synchronously (the caller, a Step Functions task, gets and handles the error): "
                                "a dead-letter queue applies to asynchronous invocations only")
    checkov_skip(function, skips)
    if dead_letters is not None:
        checkov_skip(dead_letters, {
            "CKV_AWS_27": "Encrypted with SSE-SQS (SQS-managed keys): it holds EventBridge events (names and S3 "
                          "URIs); a KMS key would need grants for EventBridge and Lambda"})
