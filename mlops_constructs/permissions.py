"""Landing-zone IAM rules for every role of a scope: a permissions boundary and a role path.

    boundary = BoundaryPolicy(shared_stack, "Boundary", path="/mlops-dev-boundary/")
    apply_role_rules(stage_or_app, boundary=boundary.policy, role_path="/mlops/")

:func:`apply_role_rules` sets the boundary (``iam.PermissionsBoundary.of(scope).apply``) and the path on every
``AWS::IAM::Role`` below the scope, including the roles CDK's own constructs add (custom resource providers, log
retention, flow logs). A role's path is part of its ARN (``role/<path><name>``) and changing it replaces the role.

CDK's own roles are outside an app's scope: ``cdk bootstrap --custom-permissions-boundary <policy name>`` puts a
boundary on the bootstrap stack's CloudFormation execution role (``--example-permissions-boundary`` creates CDK's sample
``cdk-<qualifier>-permissions-boundary``), and the ``@aws-cdk/core:permissionsBoundary`` context (``{"name": ...}``,
in cdk.json or ``-c``) or ``Stage(permissions_boundary=PermissionsBoundary.from_name(...))`` bounds every role an app
or a stage creates, like :func:`apply_role_rules` with a policy given by name.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jsii
from aws_cdk import Aspects, Aws, CfnResource, IAspect
from aws_cdk import aws_iam as iam
from constructs import Construct, IConstruct

from mlops_constructs import compliance

#: Services whose actions the boundary allows (any action: the roles' own policies grant the least privilege; the
#: boundary caps them). What the platform's roles use: storage and keys, SageMaker, Glue, logs and metrics, alarms and
#: events, inference functions and their deployments, images, the CI/CD projects and pipelines, CDK deploys (STS to
#: the bootstrap roles, CloudFormation, SSM for the bootstrap version and Session Manager on the workstation), the
#: batch-inference state machines (states) and the dead-letter queues of the event functions (sqs).
PLATFORM_SERVICES = (
    "s3", "kms", "sagemaker", "glue", "logs", "cloudwatch", "events", "sns", "lambda", "codedeploy", "ecr", "xray",
    "sts", "codebuild", "codepipeline", "codeconnections", "codestar-connections", "cloudformation", "ssm",
    "ssmmessages", "application-autoscaling", "states", "sqs",
)
#: EC2 actions the boundary allows: the network interfaces jobs, functions and Glue jobs create in a VPC.
EC2_NETWORK_ACTIONS = (
    "ec2:Describe*", "ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
    "ec2:CreateTags", "ec2:DeleteTags",
)
#: IAM actions the boundary allows: passing the platform's roles to SageMaker, Glue, Lambda and CodeBuild.
IAM_ACTIONS = ("iam:PassRole", "iam:GetRole")
#: Denied whatever a role's policies say.
DENIED_IAM_IDENTITIES = ("iam:*User*", "iam:*Group*", "iam:*AccessKey*", "iam:*LoginProfile*")
DENIED_ACCOUNT_CHANGES = (
    "organizations:*", "account:*", "iam:*AccountAlias", "iam:*AccountPasswordPolicy", "iam:*SAMLProvider*",
    "iam:*OpenIDConnectProvider*",
)
BOUNDARY_POLICY_CHANGES = (
    "iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion",
    "iam:SetDefaultPolicyVersion",
)


class BoundaryPolicy(Construct):
    """The platform's permissions boundary: a customer managed policy CloudFormation names (no physical name that may
    already exist), under an IAM ``path`` that identifies it.

    Allows: every action of :data:`PLATFORM_SERVICES`, :data:`EC2_NETWORK_ACTIONS` and :data:`IAM_ACTIONS`; nothing
    else (so no role can create roles, policies or users, or change the network).

    Denies, whatever a role's own policies grant: IAM users, groups and their credentials
    (:data:`DENIED_IAM_IDENTITIES`); Organizations, account settings and identity providers
    (:data:`DENIED_ACCOUNT_CHANGES`); removing a role's boundary; creating a role, or setting a role's boundary, with a
    boundary that is not a policy under ``path``; creating or changing policies under ``path``
    (:data:`BOUNDARY_POLICY_CHANGES`). The policy cannot name its own ARN (a circular reference), hence the path:
    keep it for this boundary alone.

    :param path: IAM path of the policy, ``/name/`` (e.g. ``/<project>-<environment>-boundary/``). Required.
    :param services: services whose actions are allowed. Default :data:`PLATFORM_SERVICES`.
    :param description: of the policy. Default: a sentence naming the path.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        path: str,
        services: Sequence[str] = PLATFORM_SERVICES,
        description: Optional[str] = None,
    ) -> None:
        super().__init__(scope, id_)
        if not (path.startswith("/") and path.endswith("/") and len(path) > 2):
            raise ValueError(f"path must look like /name/, got {path!r}")
        self.path = path
        #: What ``iam:PermissionsBoundary`` must match: any policy under ``path`` in this account.
        self.policy_arn_pattern = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:policy{path}*"
        allowed = [f"{service}:*" for service in services] + list(EC2_NETWORK_ACTIONS) + list(IAM_ACTIONS)
        outside_boundary = {"ArnNotLike": {"iam:PermissionsBoundary": self.policy_arn_pattern}}
        statements = [
            iam.PolicyStatement(sid="AllowPlatformServices", actions=allowed, resources=["*"]),
            iam.PolicyStatement(
                sid="DenyIamIdentities", effect=iam.Effect.DENY, actions=list(DENIED_IAM_IDENTITIES), resources=["*"]
            ),
            iam.PolicyStatement(
                sid="DenyAccountChanges", effect=iam.Effect.DENY, actions=list(DENIED_ACCOUNT_CHANGES), resources=["*"]
            ),
            iam.PolicyStatement(
                sid="DenyBoundaryRemoval", effect=iam.Effect.DENY, actions=["iam:DeleteRolePermissionsBoundary"],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="DenyRolesOutsideThisBoundary", effect=iam.Effect.DENY,
                actions=["iam:CreateRole", "iam:PutRolePermissionsBoundary"], resources=["*"],
                conditions=outside_boundary,
            ),
            iam.PolicyStatement(
                sid="DenyBoundaryPolicyChanges", effect=iam.Effect.DENY, actions=list(BOUNDARY_POLICY_CHANGES),
                resources=[self.policy_arn_pattern],
            ),
        ]
        self.policy = iam.ManagedPolicy(
            self, "Policy", path=path, statements=statements,
            description=description or f"Permissions boundary of the platform's roles (policies under {path})",
        )
        compliance.acknowledge_wildcard_actions(
            self.policy, [a for a in allowed if a.endswith("*")],
            "A permissions boundary caps roles by service; each role's own policy grants the least privilege",
        )
        compliance.acknowledge_wildcard_resources(
            self.policy, ["*"], "A permissions boundary applies to every resource; the roles' own policies scope them"
        )
        boundary = ("A permissions boundary is not a grant: it caps what the roles' own least-privilege policies "
                    "may allow (by service, with denies on identity, account and boundary changes)")
        compliance.checkov_skip(self.policy, {check: boundary for check in (
            "CKV_AWS_107", "CKV_AWS_108", "CKV_AWS_109", "CKV_AWS_110", "CKV_AWS_111")})


@jsii.implements(IAspect)
class _RolePath:
    """Sets ``Path`` on every ``AWS::IAM::Role`` (L2 roles and CDK's raw custom resource provider roles)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, CfnResource) and node.cfn_resource_type == "AWS::IAM::Role":
            node.add_property_override("Path", self.path)


def apply_role_rules(
    scope: IConstruct, *, boundary: Optional[iam.IManagedPolicy] = None, role_path: Optional[str] = None
) -> None:
    """Put ``boundary`` (permissions boundary) and ``role_path`` on every IAM role below ``scope`` (an App, a Stage or
    a Stack). Either may be None: left as it is.

    :param boundary: e.g. ``BoundaryPolicy(...).policy`` or ``iam.ManagedPolicy.from_managed_policy_arn(...)``.
    :param role_path: ``/`` or ``/a/b/``; roles found by ARN pattern must then include it.
    """
    if boundary is not None:
        iam.PermissionsBoundary.of(scope).apply(boundary)
    if role_path is not None:
        if not (role_path.startswith("/") and role_path.endswith("/")):
            raise ValueError(f"role_path must start and end with '/', got {role_path!r}")
        Aspects.of(scope).add(_RolePath(role_path))
