"""Read a synthesized cloud assembly (``cdk.out``) the way CloudFormation and ``cdk-assets`` will use it.

- :class:`Assembly` loads every stack template (nested Stage assemblies included) and every stack's file assets.
- :class:`Resolver` resolves CloudFormation intrinsics (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``,
  ``Fn::ImportValue``, ``Fn::FindInMap``, ``Fn::Select``, ``Fn::Split``, ``Fn::If`` ...) with a fixed rehearsal
  account and region, giving every resource the physical name CloudFormation would (its own name property when the
  template sets one, a generated one otherwise).
- :meth:`Assembly.asset_for_s3_uri` maps an asset object (``s3://cdk-<qualifier>-assets-<account>-<region>/<hash>.<ext>``)
  back to the file or directory in ``cdk.out`` that ``cdk-assets`` uploads under that key.

Nothing here reads the repository layout: everything comes from ``cdk.out``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": PARTITION,
    "AWS::URLSuffix": URL_SUFFIX,
    "AWS::NoValue": None,
    "AWS::NotificationARNs": [],
}


class RehearsalError(RuntimeError):
    """The assembly cannot work as deployed; the message names what and where."""


@dataclass(frozen=True)
class FileAsset:
    """One file asset of a stack: where cdk-assets uploads it, and what it uploads."""

    hash: str
    path: Path  # file or directory in cdk.out
    packaging: str  # "file" or "zip"
    bucket: str  # resolved bucket name
    key: str  # object key

    def content(self) -> bytes:
        """The bytes cdk-assets uploads: the file itself, or a zip of the directory."""
        if self.packaging == "file":
            return self.path.read_bytes()
        if self.path.is_file():  # an archive asset (e.g. a .zip file) uploaded as is
            return self.path.read_bytes()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(self.path.rglob("*")):
                if f.is_file():
                    zf.write(f, f.relative_to(self.path).as_posix())
        return buf.getvalue()


class Stack:
    """One synthesized stack: its template, its assets, and the physical names of its resources."""

    def __init__(self, name: str, template: dict, directory: Path, assets_file: Optional[Path]) -> None:
        self.name = name
        self.template = template
        self.directory = directory
        self.resources: dict[str, dict] = template.get("Resources", {})
        self.parameters: dict[str, Any] = {
            k: v.get("Default") for k, v in template.get("Parameters", {}).items()
        }
        self.assets: dict[str, FileAsset] = {}
        if assets_file and assets_file.exists():
            manifest = json.loads(assets_file.read_text())
            for asset_hash, entry in manifest.get("files", {}).items():
                source = entry["source"]
                if "path" not in source:
                    continue
                for dest in entry["destinations"].values():
                    self.assets[dest["objectKey"]] = FileAsset(
                        hash=asset_hash,
                        path=directory / source["path"],
                        packaging=source.get("packaging", "file"),
                        bucket=_sub_pseudo(dest["bucketName"]),
                        key=dest["objectKey"],
                    )

    def of_type(self, cfn_type: str) -> dict[str, dict]:
        return {k: v for k, v in self.resources.items() if v["Type"] == cfn_type}

    def one(self, cfn_type: str, contains: str = "") -> tuple[str, dict]:
        """The single resource of ``cfn_type`` whose logical ID contains ``contains``."""
        found = [(k, v) for k, v in self.of_type(cfn_type).items() if contains in k]
        if len(found) != 1:
            raise RehearsalError(
                f"{self.name}: expected one {cfn_type} matching {contains!r}, found {[k for k, _ in found]}"
            )
        return found[0]


def _sub_pseudo(text: str) -> str:
    for name, value in PSEUDO.items():
        if isinstance(value, str):
            text = text.replace("${" + name + "}", value)
    return text


class Assembly:
    """Every stack of a cloud assembly directory, nested Stage assemblies included."""

    def __init__(self, outdir: Path | str) -> None:
        self.outdir = Path(outdir).resolve()
        manifest_path = self.outdir / "manifest.json"
        if not manifest_path.exists():
            raise RehearsalError(f"{self.outdir} has no manifest.json: run `make synth` first")
        self.stacks: dict[str, Stack] = {}
        self._load(self.outdir)
        self.resolver = Resolver(self)

    def _load(self, directory: Path) -> None:
        manifest = json.loads((directory / "manifest.json").read_text())
        for artifact_id, artifact in manifest.get("artifacts", {}).items():
            kind = artifact.get("type")
            props = artifact.get("properties", {})
            if kind == "aws:cloudformation:stack":
                name = props.get("stackName", artifact_id)
                template = json.loads((directory / props["templateFile"]).read_text())
                assets = directory / f"{artifact_id}.assets.json"
                self.stacks[name] = Stack(name, template, directory, assets)
            elif kind == "cdk:cloud-assembly":
                self._load(directory / props["directoryName"])

    def stack(self, suffix: str) -> Stack:
        """The stack whose name ends with ``suffix`` (e.g. ``-data``)."""
        found = [s for n, s in self.stacks.items() if n.endswith(suffix)]
        if len(found) != 1:
            raise RehearsalError(f"expected one stack named *{suffix}, found {sorted(self.stacks)}")
        return found[0]

    def assets(self) -> Iterator[FileAsset]:
        seen = set()
        for stack in self.stacks.values():
            for asset in stack.assets.values():
                if (asset.bucket, asset.key) not in seen:
                    seen.add((asset.bucket, asset.key))
                    yield asset

    def asset_for_s3_uri(self, uri: str) -> FileAsset:
        """The asset cdk-assets uploads to ``uri``; a clear error when no asset has that object key."""
        match = re.match(r"^s3://([^/]+)/(.+)$", uri)
        if not match:
            raise RehearsalError(f"{uri!r} is not an S3 URI")
        bucket, key = match.groups()
        for asset in self.assets():
            if asset.bucket == bucket and asset.key == key:
                return asset
        raise RehearsalError(f"no asset of the assembly is uploaded to {uri}")

    def exports(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for stack in self.stacks.values():
            for output in stack.template.get("Outputs", {}).values():
                if "Export" in output:
                    name = self.resolver.resolve(stack, output["Export"]["Name"])
                    out[name] = (stack, output["Value"])
        return out


def physical_name(stack: Stack, logical_id: str, max_length: int = 63, lower: bool = False) -> str:
    """A generated name like CloudFormation's: ``<stack>-<logical id>-<suffix>`` shortened to ``max_length``."""
    suffix = hashlib.sha256(f"{stack.name}/{logical_id}".encode()).hexdigest()[:12].upper()
    base = f"{stack.name}-{logical_id}"[: max_length - len(suffix) - 1]
    name = f"{base}-{suffix}"
    return name.lower() if lower else name


# The property holding a resource type's own name (when the template sets one), and what Ref / GetAtt return.
_NAME_PROPERTY = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Glue::Job": "Name",
    "AWS::Glue::Crawler": "Name",
    "AWS::Glue::Workflow": "Name",
    "AWS::Glue::Trigger": "Name",
    "AWS::Glue::SecurityConfiguration": "Name",
    "AWS::SageMaker::Pipeline": "PipelineName",
    "AWS::SageMaker::ModelPackageGroup": "ModelPackageGroupName",
    "AWS::SageMaker::Endpoint": "EndpointName",
    "AWS::SageMaker::EndpointConfig": "EndpointConfigName",
    "AWS::SageMaker::Model": "ModelName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::CodeBuild::Project": "Name",
    "AWS::CodePipeline::Pipeline": "Name",
    "AWS::Events::Rule": "Name",
}


class Resolver:
    """Resolve intrinsic functions of the assembly's templates to concrete values in the rehearsal account."""

    def __init__(self, assembly: Assembly) -> None:
        self.assembly = assembly
        self.overrides: dict[tuple[str, str], Any] = {}  # (stack, parameter) -> value
        # (stack, logical id, attribute) -> value: what the rehearsal's stand-ins answer (e.g. a Function URL that
        # points at the local Function URL server, as DNS points the real one at the Lambda service).
        self.attributes: dict[tuple[str, str, str], Any] = {}
        self._names: dict[tuple[str, str], str] = {}
        self._exports: Optional[dict[str, Any]] = None

    # --- names ----------------------------------------------------------------------------------------------------
    def name(self, stack: Stack, logical_id: str) -> str:
        """The physical name (or ID) of a resource."""
        key = (stack.name, logical_id)
        if key in self._names:
            return self._names[key]
        res = stack.resources.get(logical_id)
        if res is None:
            raise RehearsalError(f"{stack.name}: no resource {logical_id}")
        cfn_type = res["Type"]
        prop = _NAME_PROPERTY.get(cfn_type)
        props = res.get("Properties") or {}
        if prop and prop in props:
            value = self.resolve(stack, props[prop])
        elif cfn_type == "AWS::S3::Bucket":
            value = physical_name(stack, logical_id, 63, lower=True)
        elif cfn_type == "AWS::KMS::Key":
            value = str(_uuid(f"{stack.name}/{logical_id}"))
        elif cfn_type == "AWS::Glue::Database":
            db = props.get("DatabaseInput", {}).get("Name")
            value = self.resolve(stack, db) if db else physical_name(stack, logical_id, 63, lower=True).replace("-", "_")
        elif cfn_type == "AWS::Logs::LogGroup":
            value = physical_name(stack, logical_id, 512)
        elif cfn_type == "AWS::IAM::Role":
            value = physical_name(stack, logical_id, 64)
        else:
            value = physical_name(stack, logical_id, 63)
        self._names[key] = value
        return value

    def ref(self, stack: Stack, logical_id: str) -> Any:
        if logical_id in PSEUDO:
            return PSEUDO[logical_id]
        if logical_id == "AWS::StackName":
            return stack.name
        if logical_id == "AWS::StackId":
            return f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack.name}/rehearsal"
        if logical_id in stack.template.get("Parameters", {}):
            if (stack.name, logical_id) in self.overrides:
                return self.overrides[(stack.name, logical_id)]
            param = stack.template["Parameters"][logical_id]
            if "Default" not in param:
                raise RehearsalError(f"{stack.name}: parameter {logical_id} has no value and no default")
            default = param["Default"]
            if param.get("Type", "").startswith("AWS::SSM::Parameter::Value"):
                return f"rehearsal-ssm-value-of:{default}"
            return default
        res = stack.resources.get(logical_id)
        if res is None:
            raise RehearsalError(f"{stack.name}: Ref to unknown {logical_id}")
        cfn_type = res["Type"]
        name = self.name(stack, logical_id)
        if cfn_type in ("AWS::SNS::Topic",):
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"
        if cfn_type in ("AWS::SageMaker::ModelPackageGroup",):
            return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/{name}"
        if cfn_type == "AWS::SageMaker::Pipeline":
            return name
        # Ref of these returns the ARN (CloudFormation resource reference, "Return values"); GetAtt <X>Name the name.
        sagemaker_arns = {"AWS::SageMaker::Endpoint": "endpoint", "AWS::SageMaker::EndpointConfig": "endpoint-config",
                          "AWS::SageMaker::Model": "model"}
        if cfn_type in sagemaker_arns:
            return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{sagemaker_arns[cfn_type]}/{name.lower()}"
        return name

    def get_att(self, stack: Stack, logical_id: str, attribute: str) -> Any:
        if (stack.name, logical_id, attribute) in self.attributes:
            return self.attributes[(stack.name, logical_id, attribute)]
        res = stack.resources.get(logical_id)
        if res is None:
            raise RehearsalError(f"{stack.name}: Fn::GetAtt of unknown {logical_id}")
        cfn_type = res["Type"]
        name = self.name(stack, logical_id)
        arns = {
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{name}",
            "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{name}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
            "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}",
            "AWS::SageMaker::ModelPackageGroup": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/{name}",
            "AWS::SageMaker::Pipeline": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{name}",
            "AWS::CodeBuild::Project": f"arn:aws:codebuild:{REGION}:{ACCOUNT}:project/{name}",
            "AWS::Events::Rule": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
            "AWS::CloudWatch::Alarm": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}",
        }
        if attribute in ("Arn", "ModelPackageGroupArn", "TopicArn"):
            if cfn_type in arns:
                return arns[cfn_type]
        if cfn_type == "AWS::S3::Bucket":
            if attribute == "DomainName":
                return f"{name}.s3.amazonaws.com"
            if attribute == "RegionalDomainName":
                return f"{name}.s3.{REGION}.amazonaws.com"
        if cfn_type == "AWS::IAM::Role" and attribute == "RoleId":
            return f"AROA{hashlib.sha256(name.encode()).hexdigest()[:16].upper()}"
        if cfn_type == "AWS::Lambda::Url" and attribute == "FunctionUrl":
            return f"https://{hashlib.sha256(logical_id.encode()).hexdigest()[:32]}.lambda-url.{REGION}.on.aws/"
        if cfn_type == "AWS::SNS::Topic" and attribute == "TopicName":
            return name
        if attribute in ("Name", f"{cfn_type.split('::')[-1]}Name"):
            return name
        return f"rehearsal-att:{stack.name}/{logical_id}.{attribute}"

    def export(self, name: str) -> Any:
        if self._exports is None:
            self._exports = self.assembly.exports()
        if name not in self._exports:
            raise RehearsalError(f"Fn::ImportValue {name!r}: no stack of the assembly exports it")
        stack, value = self._exports[name]
        return self.resolve(stack, value)

    # --- intrinsics -----------------------------------------------------------------------------------------------
    def resolve(self, stack: Stack, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.resolve(stack, x) for x in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref":
                value = self.ref(stack, arg)
                return _NO_VALUE if value is None and arg == "AWS::NoValue" else value
            if fn == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(stack, logical, attribute)
            if fn == "Fn::Join":
                sep, values = arg
                return sep.join(str(v) for v in self.resolve(stack, values))
            if fn == "Fn::Sub":
                return self._sub(stack, arg)
            if fn == "Fn::ImportValue":
                return self.export(self.resolve(stack, arg))
            if fn == "Fn::FindInMap":
                mapping, top, second = (self.resolve(stack, a) for a in arg)
                try:
                    return stack.template["Mappings"][mapping][top][second]
                except KeyError:
                    raise RehearsalError(
                        f"{stack.name}: Fn::FindInMap {mapping}/{top}/{second} has no value"
                    ) from None
            if fn == "Fn::Select":
                index, values = arg
                return self.resolve(stack, values)[int(self.resolve(stack, index))]
            if fn == "Fn::Split":
                sep, value = arg
                return str(self.resolve(stack, value)).split(sep)
            if fn == "Fn::If":
                cond, yes, no = arg
                chosen = yes if self.condition(stack, cond) else no
                return self.resolve(stack, chosen)
            if fn == "Fn::Base64":
                import base64

                return base64.b64encode(str(self.resolve(stack, arg)).encode()).decode()
            if fn == "Fn::GetAZs":
                return [f"{REGION}a", f"{REGION}b", f"{REGION}c"]
            if fn in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition"):
                return self._condition_expr(stack, node)
        out = {}
        for k, v in node.items():
            value = self.resolve(stack, v)
            if value is not _NO_VALUE:
                out[k] = value
        return out

    def condition(self, stack: Stack, name: str) -> bool:
        return bool(self._condition_expr(stack, stack.template.get("Conditions", {})[name]))

    def _condition_expr(self, stack: Stack, node: Any) -> bool:
        (fn, arg), = node.items()
        if fn == "Fn::Equals":
            a, b = (self.resolve(stack, x) for x in arg)
            return a == b
        if fn == "Fn::Not":
            return not self._condition_expr(stack, arg[0])
        if fn == "Fn::And":
            return all(self._condition_expr(stack, x) for x in arg)
        if fn == "Fn::Or":
            return any(self._condition_expr(stack, x) for x in arg)
        if fn == "Condition":
            return self.condition(stack, arg)
        return bool(self.resolve(stack, node))

    def _sub(self, stack: Stack, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(stack, v) for k, v in arg[1].items()}
        else:
            text, variables = arg, {}

        def replace(match: re.Match) -> str:
            expr = match.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in variables:
                return str(variables[expr])
            if "." in expr and not expr.startswith("AWS::"):
                logical, attribute = expr.split(".", 1)
                return str(self.get_att(stack, logical, attribute))
            return str(self.ref(stack, expr))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()


def _uuid(seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def resolved_properties(assembly: Assembly, stack: Stack, logical_id: str) -> dict:
    """A resource's Properties with every intrinsic resolved."""
    return assembly.resolver.resolve(stack, stack.resources[logical_id].get("Properties") or {})


def iter_s3_uris(node: Any) -> Iterator[str]:
    """Every ``s3://`` string in a resolved document."""
    if isinstance(node, str):
        if node.startswith("s3://"):
            yield node
    elif isinstance(node, Mapping):
        for v in node.values():
            yield from iter_s3_uris(v)
    elif isinstance(node, list):
        for v in node:
            yield from iter_s3_uris(v)
