"""Model deploy CD: resolve the latest Approved model package of a model package group.

    python -m cicd_scripts.resolve_approved_package --model-package-group NAME_OR_ARN [--output-file out.json]
        [--export-env-file deploy.env] [--expected-arn ARN] [--require-baseline] [--none-is-ok] [--region REGION]

Prints (and writes to ``--output-file``)::

    {"model_package_arn": ..., "model_package_version": 4, "model_data_url": "s3://.../model.tar.gz",
     "git_commit": "<CustomerMetadataProperties.GitCommit, else MetadataProperties.CommitId, else null>",
     "image": "<inference container image>",
     "baseline_statistics_url": "<ModelMetrics.ModelDataQuality.Statistics.S3Uri, else null>",
     "baseline_constraints_url": "<ModelMetrics.ModelDataQuality.Constraints.S3Uri, else null>"}

``--export-env-file`` writes ``export PACKAGE_FOUND=true`` and ``export MODEL_PACKAGE_ARN=...`` lines (also
MODEL_PACKAGE_VERSION, MODEL_DATA_URL, GIT_COMMIT, MODEL_IMAGE, BASELINE_STATISTICS_URL, BASELINE_CONSTRAINTS_URL) for
``. ./deploy.env`` in a buildspec. The Model Monitor baseline is what the model build pipeline recorded in the package;
``--require-baseline`` (a serving stack with an endpoint) makes a package without one an error.

"Latest" is the most recently created package whose status is Approved; Rejected and PendingManualApproval packages
never resolve. With ``--none-is-ok`` a group without an approved package is not an error: the script exits 0 and the
env file says ``PACKAGE_FOUND=false`` (every other value ``none``), so the deploy pipeline skips its stages instead of
failing on its first run. Exit codes: 0 resolved (or nothing to resolve with ``--none-is-ok``); 2 no approved package
(or invalid arguments); 3 ``--expected-arn`` is not the latest approved package (a newer approval superseded it, or it
is not approved); 1 any other failure (a missing group or baseline included).
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime
from typing import Any, Optional, Sequence

from botocore.exceptions import ClientError

from cicd_scripts._common import (EXIT_OK, EXIT_USAGE, ArgumentParser, ScriptError, UsageError, client, error_code,
                                   error_message, log, run, write_env_file, write_json_file)

APPROVED = "Approved"
EXIT_NO_APPROVED = EXIT_USAGE
EXIT_SUPERSEDED = 3
GIT_COMMIT_KEYS = ("GitCommit", "git_commit", "git-commit")
# CodePipeline refuses empty output variables: what the env file holds for a value the package does not have.
NONE = "none"
ENV_KEYS = {
    "MODEL_PACKAGE_ARN": "model_package_arn",
    "MODEL_PACKAGE_VERSION": "model_package_version",
    "MODEL_DATA_URL": "model_data_url",
    "GIT_COMMIT": "git_commit",
    "MODEL_IMAGE": "image",
    "BASELINE_STATISTICS_URL": "baseline_statistics_url",
    "BASELINE_CONSTRAINTS_URL": "baseline_constraints_url",
}
GROUP_RE = re.compile(
    r"^(arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package-group/)?[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
)
PACKAGE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/.+$")


class NoApprovedPackage(ScriptError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_NO_APPROVED)


class MissingGroup(ScriptError):
    """The group does not exist: a misconfiguration, never a quiet "nothing to deploy"."""


def no_approved_message(group: str) -> str:
    return (
        f"model package group '{group}' has no Approved model package (Rejected and PendingManualApproval ones "
        "never deploy); approve a version in SageMaker Studio or with: aws sagemaker update-model-package "
        "--model-package-arn <arn of the version> --model-approval-status Approved"
    )


def _group_display(group: str) -> str:
    return group.rsplit("/", 1)[-1] if group.startswith("arn:") else group


def latest_approved_summary(sm: Any, group: str, page_size: int = 100) -> Optional[dict[str, Any]]:
    """The summary of the newest Approved package of ``group`` across all pages, or None.

    The service sorts by creation time descending already; the maximum is still taken over every page (by creation
    time, then version) so neither the page order nor ties in the timestamps can pick an older version.
    """
    best: Optional[dict[str, Any]] = None
    best_key: Optional[tuple[datetime, int]] = None
    paginator = sm.get_paginator("list_model_packages")
    pages = paginator.paginate(
        ModelPackageGroupName=group,
        ModelApprovalStatus=APPROVED,
        SortBy="CreationTime",
        SortOrder="Descending",
        PaginationConfig={"PageSize": page_size},
    )
    for page in pages:
        for summary in page.get("ModelPackageSummaryList", []):
            if summary.get("ModelApprovalStatus") != APPROVED:
                continue
            key = (summary["CreationTime"], int(summary.get("ModelPackageVersion") or 0))
            if best_key is None or key > best_key:
                best, best_key = summary, key
    return best


def _git_commit(desc: dict[str, Any]) -> Optional[str]:
    custom = desc.get("CustomerMetadataProperties") or {}
    for key in GIT_COMMIT_KEYS:
        if custom.get(key):
            return str(custom[key])
    commit = (desc.get("MetadataProperties") or {}).get("CommitId")
    return str(commit) if commit else None


def _baseline(desc: dict[str, Any], part: str) -> Optional[str]:
    quality = (desc.get("ModelMetrics") or {}).get("ModelDataQuality") or {}
    uri = (quality.get(part) or {}).get("S3Uri")
    return str(uri) if uri else None


def package_info(desc: dict[str, Any]) -> dict[str, Any]:
    """The output document from a describe_model_package response."""
    arn = desc["ModelPackageArn"]
    containers = (desc.get("InferenceSpecification") or {}).get("Containers") or []
    if not containers:
        raise ScriptError(f"model package {arn} has no inference container; it cannot be deployed")
    container = containers[0]
    model_data_url = container.get("ModelDataUrl") or (
        ((container.get("ModelDataSource") or {}).get("S3DataSource") or {}).get("S3Uri")
    )
    if not model_data_url:
        raise ScriptError(f"model package {arn} has no model data (ModelDataUrl) in its first container")
    return {
        "model_package_arn": arn,
        "model_package_version": desc.get("ModelPackageVersion"),
        "model_data_url": model_data_url,
        "git_commit": _git_commit(desc),
        "image": container.get("Image"),
        "baseline_statistics_url": _baseline(desc, "Statistics"),
        "baseline_constraints_url": _baseline(desc, "Constraints"),
    }


def check_baseline(info: dict[str, Any]) -> None:
    """A serving stack with an endpoint monitors it against the package's data-quality baseline: it must exist."""
    parts = (("Statistics", "baseline_statistics_url"), ("Constraints", "baseline_constraints_url"))
    missing = [name for name, key in parts if not info[key]]
    if missing:
        raise ScriptError(
            f"model package {info['model_package_arn']} has no Model Monitor baseline "
            f"(ModelMetrics.ModelDataQuality.{' and '.join(missing)}.S3Uri); the endpoint's data-quality monitor needs "
            "it: register the package from the model build pipeline, which records the baseline"
        )


def env_values(info: Optional[dict[str, Any]]) -> dict[str, str]:
    """The exported variables: PACKAGE_FOUND and every ENV_KEYS value (``none`` when absent)."""
    values = {"PACKAGE_FOUND": "true" if info else "false"}
    for name, key in ENV_KEYS.items():
        value = (info or {}).get(key)
        values[name] = NONE if value is None or value == "" else str(value)
    return values


def resolve(sm: Any, group: str, page_size: int = 100) -> dict[str, Any]:
    """The latest Approved package's info; :class:`NoApprovedPackage` when there is none."""
    try:
        sm.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as exc:
        if error_code(exc) in ("ValidationException", "ResourceNotFound") and "does not exist" in error_message(exc):
            raise MissingGroup(
                f"model package group '{group}' does not exist in {sm.meta.region_name}; the model build stack "
                "creates it and the model build pipeline registers versions in it"
            ) from None
        raise
    summary = latest_approved_summary(sm, group, page_size)
    if summary is None:
        raise NoApprovedPackage(no_approved_message(_group_display(group)))
    desc = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
    if desc.get("ModelApprovalStatus") != APPROVED:
        raise ScriptError(
            f"model package {desc['ModelPackageArn']} changed to {desc.get('ModelApprovalStatus')} while resolving; "
            "re-run the deployment"
        )
    return package_info(desc)


def check_expected(sm: Any, expected_arn: str, resolved: dict[str, Any], group: str) -> None:
    if expected_arn == resolved["model_package_arn"]:
        return
    try:
        status = sm.describe_model_package(ModelPackageName=expected_arn).get("ModelApprovalStatus")
    except ClientError:
        status = None
    latest = f"{resolved['model_package_arn']} (version {resolved['model_package_version']})"
    if status != APPROVED:
        shown = status or "not found"
        raise ScriptError(
            f"--expected-arn {expected_arn} is {shown}, not Approved; the latest approved package of group "
            f"'{_group_display(group)}' is {latest}; not deploying",
            EXIT_SUPERSEDED,
        )
    raise ScriptError(
        f"--expected-arn {expected_arn} is not the latest approved package of group '{_group_display(group)}': "
        f"{latest} is newer; the run for that approval deploys it, this one stops",
        EXIT_SUPERSEDED,
    )


def _parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m cicd_scripts.resolve_approved_package",
        description="Resolve the latest Approved model package of a model package group.",
    )
    p.add_argument("--model-package-group", required=True, help="group name, or its ARN (cross-account)")
    p.add_argument("--output-file", help="write the result JSON here")
    p.add_argument("--export-env-file", help="write 'export KEY=value' lines here")
    p.add_argument("--expected-arn", help="fail (exit 3) unless this package is the latest approved one")
    p.add_argument("--require-baseline", action="store_true",
                   help="fail unless the package records a Model Monitor baseline (serving with an endpoint)")
    p.add_argument("--none-is-ok", action="store_true",
                   help="no approved package: exit 0 and write PACKAGE_FOUND=false instead of failing")
    p.add_argument("--region", help="default: the AWS_REGION of the environment")
    return p


def main(argv: Optional[Sequence[str]] = None, *, sagemaker: Any = None, page_size: int = 100) -> int:
    def body(args: argparse.Namespace) -> int:
        group = args.model_package_group
        if not GROUP_RE.match(group):
            raise UsageError(f"--model-package-group {group!r} is not a model package group name or ARN")
        if args.expected_arn and not PACKAGE_ARN_RE.match(args.expected_arn):
            raise UsageError(f"--expected-arn {args.expected_arn!r} is not a model package ARN")
        sm = sagemaker or client("sagemaker", args.region)
        try:
            info = resolve(sm, group, page_size)
        except NoApprovedPackage as exc:
            if not args.none_is_ok:
                raise
            log(f"nothing to deploy: {exc}")
            if args.export_env_file:
                write_env_file(args.export_env_file, env_values(None))
            print(json.dumps(None), flush=True)
            return EXIT_OK
        log(
            f"latest approved package of '{_group_display(group)}': version {info['model_package_version']} "
            f"({info['model_package_arn']}), commit {info['git_commit'] or 'unknown'}"
        )
        if args.expected_arn:
            check_expected(sm, args.expected_arn, info, group)
        if args.require_baseline:
            check_baseline(info)
        print(json.dumps(info, indent=2), flush=True)
        if args.output_file:
            write_json_file(args.output_file, info)
        if args.export_env_file:
            write_env_file(args.export_env_file, env_values(info))
        return EXIT_OK

    return run(_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
