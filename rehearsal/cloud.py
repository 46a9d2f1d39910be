"""A local stand-in for the rehearsal account: a moto server on 127.0.0.1 with IAM authorization on.

:class:`Cloud` starts moto in this process, "deploys" what the assembly's templates create and what the services need
to run the platform's code (buckets, IAM roles with exactly the templates' policies, model package groups, topics,
log groups, the CDK asset bucket with the asset objects under their keys), then hands out credentials of a role
(:meth:`Cloud.session`, :meth:`Cloud.environ`), so each entry point runs as its service runs it: under its own role.

IAM authorization (:func:`install_authorizer`): moto's own check compares non-S3 requests with the resource ``*`` and
denies statements with a ``Condition``; the rehearsal replaces it with an evaluation of each request's action *and*
resource ARN (derived from the request for the actions the platform's code calls; the action alone where the resource
cannot be derived), explicit Deny first. Conditions are taken as met (the rehearsal is never stricter than IAM on
them). Each denial is recorded in :data:`DENIALS` and raised as AccessDenied, as AWS would.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Optional
from urllib.parse import parse_qs, quote, unquote, urlparse

from rehearsal.assembly import ACCOUNT, REGION, Assembly, RehearsalError, Stack

ADMIN_USER = "rehearsal-admin"


@dataclass(frozen=True)
class Denial:
    principal: str
    action: str
    resources: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.principal} may not {self.action} on {', '.join(self.resources) or '*'}"


DENIALS: list[Denial] = []
_LOCK = threading.Lock()


# --- the authorizer -------------------------------------------------------------------------------------------------
def _match(pattern: str, value: str) -> bool:
    regex = "^" + re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + "$"
    return re.match(regex, value, flags=re.IGNORECASE if ":" not in pattern else 0) is not None


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _action_matches(statement: dict, action: str) -> bool:
    if "NotAction" in statement:
        return not any(_match(a.lower(), action.lower()) for a in _as_list(statement["NotAction"]))
    return any(_match(a.lower(), action.lower()) for a in _as_list(statement.get("Action", [])))


def _resource_matches(statement: dict, resource: Optional[str]) -> bool:
    """``resource`` None: the request's resource is unknown, so any statement about the action counts."""
    if resource is None:
        return True
    if "NotResource" in statement:
        return not any(_match(r, resource) for r in _as_list(statement["NotResource"]))
    return any(_match(r, resource) for r in _as_list(statement.get("Resource", [])))


def evaluate(policies: Iterable[dict], action: str, resources: Optional[list[list[str]]]) -> bool:
    """IAM's decision for ``action`` on every resource of ``resources`` (each a list of equivalent ARNs).

    None means the resource is not derived from the request: the action must be allowed on some resource.
    """
    statements = []
    for policy in policies:
        doc = json.loads(policy) if isinstance(policy, str) else policy
        statements.extend(_as_list(doc.get("Statement", [])))
    checks = resources if resources is not None else [[None]]  # type: ignore[list-item]
    for alternatives in checks:
        def allowed(effect: str) -> bool:
            return any(
                s.get("Effect") == effect and _action_matches(s, action) and any(
                    _resource_matches(s, r) if effect == "Allow" or r is not None else _as_list(s.get("Resource")) == ["*"]
                    for r in alternatives
                )
                for s in statements
            )

        if allowed("Deny") or not allowed("Allow"):
            return False
    return True


def _policy_documents(access_key: Any) -> list[dict]:
    from moto.iam.access_control import IAMPolicy

    return [IAMPolicy(policy)._policy_json for policy in access_key.collect_policies()]


def _policy_documents_of_role(cloud: "Cloud", role_arn: str) -> list[dict]:
    """The identity policies of a role of the stand-in account (inline and attached), as the authorizer reads them."""
    iam = cloud.admin("iam")
    name = role_arn.rsplit("/", 1)[-1]
    docs = [iam.get_role_policy(RoleName=name, PolicyName=n)["PolicyDocument"]
            for n in iam.list_role_policies(RoleName=name)["PolicyNames"]]
    for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
        docs.append(iam.get_policy_version(PolicyArn=attached["PolicyArn"],
                                           VersionId=policy["DefaultVersionId"])["PolicyVersion"]["Document"])
    return [json.loads(d) if isinstance(d, str) else d for d in docs]


def request_resources(service: str, action: str, path: str, data: dict, body: bytes) -> Optional[list[list[str]]]:
    """The resource ARNs of a request, for the actions the platform's code calls; None where not derived."""
    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:"
    try:
        payload = json.loads(body or b"{}") if body and body[:1] in (b"{", b"[") else {}
    except ValueError:
        payload = {}

    def field(name: str) -> Optional[str]:
        if name in payload:
            return payload[name]
        value = data.get(name) if isinstance(data, dict) else None
        return value[0] if isinstance(value, list) else value

    name = action.split(":", 1)[1]
    if service == "sagemaker":
        sm = arn.format("sagemaker")
        if name.startswith("List") and name not in ("ListPipelineExecutionSteps", "ListPipelineExecutions", "ListTags"):
            return [["*"]]
        if name in ("DescribeModelPackage", "UpdateModelPackage", "DeleteModelPackage"):
            value = field("ModelPackageName") or field("ModelPackageArn")
            return [[value]] if value and value.startswith("arn:") else None
        if name in ("DescribeModelPackageGroup", "DeleteModelPackageGroup"):
            value = field("ModelPackageGroupName")
            return [[value if value.startswith("arn:") else f"{sm}model-package-group/{value}"]] if value else None
        if name in ("StartPipelineExecution", "DescribePipeline", "UpdatePipeline", "ListPipelineExecutions"):
            value = field("PipelineName")
            return [[value if value.startswith("arn:") else f"{sm}pipeline/{value}"]] if value else None
        if name in ("DescribePipelineExecution", "ListPipelineExecutionSteps", "StopPipelineExecution"):
            value = field("PipelineExecutionArn")
            return [[value]] if value else None
        if name in ("DescribeEndpoint", "UpdateEndpoint", "DeleteEndpoint"):
            value = field("EndpointName")
            return [[f"{sm}endpoint/{value.lower()}"]] if value else None
        if name == "InvokeEndpoint":
            m = re.match(r"^/endpoints/([^/]+)/invocations", path)
            return [[f"{sm}endpoint/{unquote(m.group(1)).lower()}"]] if m else None
        if name == "AddTags":
            value = field("ResourceArn")
            return [[value]] if value else None
        return None
    if service == "lambda":
        m = re.match(r"^/20\d\d-\d\d-\d\d/functions/([^/?]+)(/invocations)?", path)
        if not m:
            return None
        fn = unquote(m.group(1))
        fn_arn = fn if fn.startswith("arn:") else f"{arn.format('lambda')}function:{fn}"
        query = parse_qs(urlparse(path).query)
        if "Qualifier" in query:
            fn_arn = f"{fn_arn}:{query['Qualifier'][0]}"
        return [[fn_arn]]
    if service == "logs":
        group, stream = field("logGroupName"), field("logStreamName")
        if not group:
            return None
        base = f"{arn.format('logs')}log-group:{group}"
        if stream:
            return [[f"{base}:log-stream:{stream}", base]]
        return [[base, f"{base}:*"]]
    if service == "sns":
        topic = field("TopicArn")
        return [[topic]] if topic else None
    if service == "glue":
        glue = arn.format("glue")
        if name in ("StartJobRun", "GetJobRun", "GetJobRuns", "GetJob", "BatchStopJobRun"):
            job = field("JobName")
            return [[f"{glue}job/{job}"]] if job else None
        if name in ("NotifyEvent", "StartWorkflowRun", "GetWorkflow", "GetWorkflowRun"):
            wf = field("Name")
            return [[f"{glue}workflow/{wf}"]] if wf else None
        if name in ("StartCrawler", "GetCrawler"):
            crawler = field("Name")
            return [[f"{glue}crawler/{crawler}"]] if crawler else None
        # Data Catalog ("Specifying AWS Glue resource ARNs"): a table's operations need the catalog, its database and
        # the table; a partition's are authorized on its table.
        database, table = field("DatabaseName"), field("TableName") or (field("Name") if "Table" in name else None)
        if database and table and ("Table" in name or "Partition" in name):
            return [[f"{glue}catalog"], [f"{glue}database/{database}"], [f"{glue}table/{database}/{table}"]]
        if name in ("GetDatabase", "GetTables") and (field("Name") or database):
            return [[f"{glue}catalog"], [f"{glue}database/{field('Name') or database}"]]
        return None
    if service == "cloudwatch" and name in ("DescribeAlarms",):
        return [["*"]] if not field("AlarmNames.member.1") else None
    return None


def install_authorizer() -> None:
    """Replace moto's permission check (see the module docstring). Idempotent."""
    from moto.iam import access_control

    base = access_control.IAMRequestBase
    if getattr(base, "_rehearsal_authorizer", False):
        return

    def check_action_permitted(self, resource: str) -> None:  # noqa: ANN001 (moto's signature)
        if self._action == "sts:GetCallerIdentity":
            return
        if resource and resource != "*":
            resources: Optional[list[list[str]]] = [[resource]]
        else:
            resources = request_resources(
                self._service, self._action, self._path, self._data or {}, self._body or b""
            )
        if not evaluate(_policy_documents(self._access_key), self._action, resources):
            principal = getattr(self._access_key, "arn", "unknown principal")
            with _LOCK:
                DENIALS.append(Denial(principal, self._action, tuple(r[0] for r in resources or [])))
            self._raise_access_denied()

    base.check_action_permitted = check_action_permitted
    original_request = base._create_aws_request

    def create_aws_request(self):  # noqa: ANN001, ANN202 (moto's signature)
        # moto re-signs the request's URL with its query still percent-encoded, and botocore quotes it again
        # (``prefix=a%2F`` -> ``a%252F``): every S3 request with a '/' in a query value (ListObjectsV2 with a
        # prefix) failed as SignatureDoesNotMatch. Sign the decoded parameters, as the client did.
        request = original_request(self)
        path, sep, query = request.url.partition("?")
        if type(self).__name__ == "S3IAMRequest":
            # The server's URL keeps sub-delimiters such as '=' unencoded; the S3 client signed the key as botocore
            # quotes it (safe '/~'): ``ingest_date=2024-01-01/`` keys failed as SignatureDoesNotMatch.
            path = quote(unquote(path), safe="/~")
            request.url = path + (sep + query if sep else "")
        if sep and query:
            params = {}
            for pair in query.split("&"):
                key, _, value = pair.partition("=")
                params[unquote(key)] = unquote(value)
            request.url = path
            request.params = params
        return request

    base._create_aws_request = create_aws_request
    base._rehearsal_authorizer = True


# --- references the account's services return ---------------------------------------------------------------------
def _state_machine_references(resolver: Any) -> None:
    """``Ref`` of an ``AWS::StepFunctions::StateMachine`` is its ARN and ``Fn::GetAtt Arn`` too (CloudFormation's
    "Return values"; ``Name``/``StateMachineName`` the name): the model stacks' batch-inference policies, rule targets
    and stack parameters name the state machine so. (Belongs in the resolver's tables of ``rehearsal.assembly``.)"""
    if getattr(resolver, "_state_machine_references", False):
        return
    ref, get_att = resolver.ref, resolver.get_att

    def arn(stack: Stack, logical_id: str) -> Optional[str]:
        res = stack.resources.get(logical_id)
        if res is None or res.get("Type") != "AWS::StepFunctions::StateMachine":
            return None
        props = res.get("Properties") or {}
        name = props.get("StateMachineName")
        name = name if isinstance(name, str) else resolver.name(stack, logical_id)
        return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"

    def state_machine_ref(stack: Stack, logical_id: str) -> Any:
        return arn(stack, logical_id) or ref(stack, logical_id)

    def state_machine_get_att(stack: Stack, logical_id: str, attribute: str) -> Any:
        value = arn(stack, logical_id) if attribute == "Arn" else None
        return value or get_att(stack, logical_id, attribute)

    resolver.ref, resolver.get_att = state_machine_ref, state_machine_get_att
    resolver._state_machine_references = True


# --- the stand-in account ---------------------------------------------------------------------------------------------
class Cloud:
    """moto on a free loopback port; resources of the assembly; credentials per role."""

    def __init__(self, assembly: Assembly) -> None:
        self.assembly = assembly
        self.resolver = assembly.resolver
        _state_machine_references(self.resolver)
        self.server = None
        self.endpoint_url = ""
        self._admin: Optional[tuple[str, str]] = None
        self.roles: dict[str, str] = {}  # role ARN -> "<stack>/<logical id>"

    # lifecycle
    def start(self) -> "Cloud":
        import os

        from moto import settings
        from moto.core.authorization import ActionAuthenticatorMixin
        from moto.server import ThreadedMotoServer

        for var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            os.environ.pop(var, None)
        install_authorizer()
        settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()  # moto's state is per process: a second Cloud starts from an empty account too
        iam = self._client("iam", creds=("testing", "testing", None))
        iam.create_user(UserName=ADMIN_USER)
        iam.put_user_policy(
            UserName=ADMIN_USER,
            PolicyName="everything",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            ),
        )
        key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
        self._admin = (key["AccessKeyId"], key["SecretAccessKey"])
        # From here on every request is authenticated and authorized.
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        ActionAuthenticatorMixin.request_count = 0
        DENIALS.clear()
        return self

    def stop(self) -> None:
        from moto import settings

        if self.server is not None:
            self.server.stop()
            self.server = None
        settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")

    def __enter__(self) -> "Cloud":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # clients and credentials
    def _client(self, service: str, creds: tuple[str, str, Optional[str]]) -> Any:
        import boto3

        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=creds[0],
            aws_secret_access_key=creds[1],
            aws_session_token=creds[2],
        )

    def admin(self, service: str) -> Any:
        """A client with the account's administrator (for setting up and inspecting the stand-in)."""
        assert self._admin, "start() first"
        return self._client(service, (self._admin[0], self._admin[1], None))

    def credentials(self, role_arn: str, session_name: str = "rehearsal") -> tuple[str, str, str]:
        """Temporary credentials of ``role_arn``, as the service that assumes it would get them."""
        from moto.sts.models import sts_backends

        if role_arn not in self.roles:
            raise RehearsalError(f"{role_arn} is not a role of the assembly")
        assumed = sts_backends[ACCOUNT]["aws"].assume_role(
            region_name=REGION, role_session_name=session_name, role_arn=role_arn, policy=None,
            duration=3600, external_id=None,
        )
        return assumed.access_key_id, assumed.secret_access_key, assumed.session_token

    def client(self, service: str, role_arn: str) -> Any:
        return self._client(service, self.credentials(role_arn))

    def environ(self, role_arn: str) -> dict[str, str]:
        """Environment variables of a process that runs under ``role_arn`` against the stand-in."""
        key, secret, token = self.credentials(role_arn)
        return {
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_SESSION_TOKEN": token,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    # deployment
    def deploy(self, stacks: Optional[Iterable[Stack]] = None) -> None:
        """Create what the stacks' templates create and the rehearsal needs, and upload the file assets."""
        stacks = list(stacks if stacks is not None else self.assembly.stacks.values())
        s3 = self.admin("s3")
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        for asset in self.assembly.assets():
            if asset.bucket not in existing:
                s3.create_bucket(Bucket=asset.bucket)
                existing.add(asset.bucket)
        for stack in stacks:
            for logical in stack.of_type("AWS::S3::Bucket"):
                name = self.resolver.name(stack, logical)
                if name not in existing:
                    s3.create_bucket(Bucket=name)
                    existing.add(name)
            self._roles(stack)
            for logical, res in stack.of_type("AWS::SageMaker::ModelPackageGroup").items():
                self.admin("sagemaker").create_model_package_group(
                    ModelPackageGroupName=self.resolver.name(stack, logical)
                )
            self._catalog(stack)
            for logical in stack.of_type("AWS::SNS::Topic"):
                self.admin("sns").create_topic(Name=self.resolver.name(stack, logical))
            for logical in stack.of_type("AWS::Logs::LogGroup"):
                name = self.resolver.name(stack, logical)
                try:
                    self.admin("logs").create_log_group(logGroupName=name)
                except self.admin("logs").exceptions.ResourceAlreadyExistsException:
                    raise RehearsalError(
                        f"{stack.name}/{logical}: log group {name} is created twice in one account and region"
                    ) from None

    def _catalog(self, stack: Stack) -> None:
        """The Glue databases, then the tables, as CloudFormation creates them (CreateDatabase, CreateTable)."""
        glue = self.admin("glue")
        for logical in stack.of_type("AWS::Glue::Database"):
            props = self.resolver.resolve(stack, stack.resources[logical]["Properties"])
            glue.create_database(DatabaseInput=props["DatabaseInput"])
        for logical in stack.of_type("AWS::Glue::Table"):
            props = self.resolver.resolve(stack, stack.resources[logical]["Properties"])
            try:
                glue.create_table(DatabaseName=props["DatabaseName"], TableInput=props["TableInput"])
            except Exception as exc:  # noqa: BLE001 (botocore's ClientError: what CloudFormation would report)
                raise RehearsalError(f"{stack.name}/{logical}: CreateTable fails: {exc}") from None

    def upload_asset(self, uri: str) -> None:
        """Put the asset object ``uri`` where cdk-assets puts it (done on demand: some assets are large)."""
        asset = self.assembly.asset_for_s3_uri(uri)
        self.admin("s3").put_object(Bucket=asset.bucket, Key=asset.key, Body=asset.content())

    def _roles(self, stack: Stack) -> None:
        iam = self.admin("iam")
        resolve = self.resolver.resolve
        for logical, res in stack.of_type("AWS::IAM::Role").items():
            props = resolve(stack, res.get("Properties") or {})
            name = self.resolver.name(stack, logical)
            role = iam.create_role(
                RoleName=name,
                Path=props.get("Path", "/"),
                AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]),
            )["Role"]
            self.roles[role["Arn"]] = f"{stack.name}/{logical}"
            for policy in props.get("Policies", []):
                iam.put_role_policy(
                    RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(policy["PolicyDocument"])
                )
            for arn in props.get("ManagedPolicyArns", []):
                try:
                    iam.attach_role_policy(RoleName=name, PolicyArn=arn)
                except iam.exceptions.NoSuchEntityException:
                    pass  # an AWS managed policy moto does not ship: the rehearsal cannot check it
        for logical, res in stack.of_type("AWS::IAM::Policy").items():
            props = resolve(stack, res.get("Properties") or {})
            for role_name in props.get("Roles", []):
                iam.put_role_policy(
                    RoleName=role_name,
                    PolicyName=props["PolicyName"],
                    PolicyDocument=json.dumps(props["PolicyDocument"]),
                )

    def role_arn(self, stack: Stack, logical_id: str) -> str:
        return self.resolver.get_att(stack, logical_id, "Arn")
