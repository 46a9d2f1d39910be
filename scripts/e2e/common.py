"""What every part of the e2e run shares: constants, errors, the run's names, the CDK CLI and small helpers."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from botocore.exceptions import ClientError

from cicd_scripts._common import EXIT_FAILED, EXIT_TIMEOUT, EXIT_USAGE, error_code, error_message
from platform_config.names import Names as PlatformNames

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT / "data" / "abalone.csv"
DATA_ATTRIBUTION = (
    "UCI Machine Learning Repository 'Abalone' (Nash, Sellers, Talbot, Cawthorn and Ford, 1994), CC BY 4.0; "
    "see data/README.md"
)
TEARDOWN_MODES = ("none", "stacks", "all")
KMS_MIN_PENDING_DAYS = 7  # ScheduleKeyDeletion accepts 7-30 days
PROD_NAME = re.compile(r"prod|prd|^live$")

GLUE_FAILED = {"FAILED", "ERROR", "TIMEOUT", "STOPPED", "EXPIRED"}
PIPELINE_FAILED = {"Failed", "Stopped", "Stopping"}
DEPLOY_FAILED = {"Failed", "Stopped", "Stopping", "Superseded", "Cancelled"}


# ------------------------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------------------------
class E2EError(Exception):
    """A stage failed: ``str(exc)`` is the one line printed; ``exit_code`` what the command returns."""

    exit_code = EXIT_FAILED

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class WaitTimeout(E2EError):
    exit_code = EXIT_TIMEOUT


class Refused(E2EError):
    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__("preflight", message)


# ------------------------------------------------------------------------------------------------------------------
# Names: the run's selection over platform_config.names (the one names module every layer uses; no CDK import)
# ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Names:
    platform: PlatformNames
    dataset: str
    model: str
    stages: tuple[str, ...]
    served: bool
    all_models: tuple[str, ...] = ()
    all_served: tuple[tuple[str, str], ...] = ()
    workstation: bool = False
    prefix: str = field(init=False)
    etl_job: str = field(init=False)
    pipeline: str = field(init=False)
    deploy_pipeline: str = field(init=False)

    @classmethod
    def of(cls, config: Any, model: Any) -> "Names":
        return cls(
            platform=config.names,
            dataset=config.dataset_of(model).name,
            model=model.name,
            stages=tuple(s.name for s in model.stages),
            served=bool(model.endpoint.enabled or model.lambda_.enabled),
            all_models=tuple(m.name for m in config.models),
            all_served=tuple(
                (m.name, s.name) for m in config.models if m.endpoint.enabled or m.lambda_.enabled for s in m.stages
            ),
            workstation=bool(config.workstation.enabled),
        )

    def __post_init__(self) -> None:
        derived = {
            "prefix": self.platform.prefix,
            "etl_job": self.platform.etl_job(self.dataset),
            "pipeline": self.platform.model_resource(self.model),  # the SageMaker pipeline and the package group
            "deploy_pipeline": self.platform.deploy_pipeline(self.model),  # the model's deploy CD
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def raw_export(self) -> str:  # stacks.common.LakeReferences
        return self.platform.lake_export("raw", "name")

    def serving_stack(self, model: str, stage: str) -> str:
        return self.platform.serving_stack(model, stage)

    def core_stacks(self) -> list[str]:
        """The stacks ``cdk deploy --all`` creates, in deploy order."""
        names = [self.platform.stack("shared"), self.platform.stack("data")]
        names += [self.platform.model_stack(m) for m in self.all_models]
        if self.workstation:
            names.append(self.platform.stack("workstation"))
        return names

    def serving_stacks(self) -> list[str]:
        return [self.serving_stack(m, s) for m, s in self.all_served]

    def group_of_stack(self, stack: str) -> Optional[str]:
        """The model package group a model stack declares (``<prefix>-<model>``)."""
        marker = self.platform.model_stack("")
        return self.platform.model_resource(stack[len(marker):]) if stack.startswith(marker) else None

    # mlops_constructs.cicd (the deploy CD): stage and action names of the deploy pipeline
    smoke_stage = staticmethod(lambda stage: f"Smoke-{stage}")
    approval_stage = staticmethod(lambda stage: f"Approve-{stage}")
    approval_action = staticmethod(lambda stage: f"ApproveDeployTo{stage.capitalize()}")


# ------------------------------------------------------------------------------------------------------------------
# The CDK CLI
# ------------------------------------------------------------------------------------------------------------------
def cdk_cli(region: str, root: Path = ROOT) -> Callable[[list[str]], dict]:
    """``run_cdk`` for real runs: the pinned CLI (node_modules/.bin/cdk) in the repository, output to the terminal;
    returns the ``--outputs-file`` JSON when the arguments name one."""

    def run(args: list[str]) -> dict:
        cli = root / "node_modules" / ".bin" / "cdk"
        if not cli.exists():
            raise E2EError("cdk", f"{cli} is missing; run `make install` (npm ci) first")
        env = {
            **os.environ,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "CDK_DISABLE_VERSION_CHECK": "true",
            "CDK_DISABLE_CLI_TELEMETRY": "true",
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": os.environ.get(
                "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20"),
            "SAGEMAKER_TELEMETRY_OPT_OUT": "true",
        }
        cmd = [str(cli), *args]
        print(f"$ {shlex.join(['cdk', *args])}", file=sys.stderr, flush=True)
        rc = subprocess.run(cmd, cwd=root, env=env, check=False).returncode
        if rc != 0:
            raise E2EError("cdk", f"`cdk {' '.join(args[:2])}` exited with {rc} (its output is above)")
        if "--outputs-file" in args:
            path = Path(args[args.index("--outputs-file") + 1])
            path = path if path.is_absolute() else root / path
            return json.loads(path.read_text()) if path.exists() else {}
        return {}

    return run


# ------------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------------
def gone(*codes: str, message: str = "") -> Callable[[ClientError], bool]:
    """A predicate: the error says the resource no longer exists (``codes``; with ``message``, for the last code only
    when the message says so, as SageMaker answers ValidationException for a missing group)."""

    def check(exc: ClientError) -> bool:
        code = error_code(exc)
        if code not in codes:
            return False
        return not message or code != codes[-1] or message in error_message(exc)

    return check


def split_s3(uri: str) -> tuple[str, str]:
    m = re.match(r"^s3://([^/]+)/(.+)$", uri or "")
    if not m:
        raise E2EError("invoke", f"{uri!r} is not an s3://bucket/key URI")
    return m.group(1), m.group(2)


def snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def number_or_text(raw: Optional[str]) -> Any:
    """A CSV cell as a float when it reads as one, else as it is (None and "" included)."""
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return raw


def bootstrap_qualifier(root: Path = ROOT) -> str:
    """The CDK bootstrap qualifier of the app (cdk.json), default ``hnb659fds``."""
    try:
        context = json.loads((root / "cdk.json").read_text()).get("context", {})
    except (OSError, json.JSONDecodeError):
        context = {}
    return context.get("@aws-cdk/core:bootstrapQualifier") or "hnb659fds"

