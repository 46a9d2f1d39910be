"""ResolveChampion step: find the model's champion (its latest Approved package) and stage its model for Evaluate.

Runs as a processing job in the SageMaker scikit-learn container (boto3 is part of it) and as a plain script (the
local runner). Standalone on purpose (the job uploads this file alone); keep it Python 3.8/3.9 compatible.

Why a job of its own: Evaluate must score the champion on the challenger's test split, and in a VPC every job that
touches data runs with network isolation (no AWS API call from inside it). This step only calls the registry and
reads one model artifact, so it is the one job that runs without isolation (still in the VPC, which has the
SageMaker API interface endpoint and the S3 gateway, with encrypted volumes and outputs); Evaluate stays isolated
and gets the champion as an ordinary input that SageMaker downloads.

What it does, with the job role's credentials:
  1. ``ListModelPackages`` of the group, ``ModelApprovalStatus=Approved``, newest first (``SortBy=CreationTime``,
     ``SortOrder=Descending``, ``MaxResults=1``): the champion is the package the deploy pipeline serves (its resolver
     takes the latest Approved one too). ListModelPackages has no IAM resource type, so the role holds it on ``*``.
  2. ``DescribeModelPackage`` of it: ``InferenceSpecification.Containers[0].ModelDataUrl``.
  3. ``s3:GetObject`` of that ``model.tar.gz`` (the pipeline's own artifacts, under the model's prefix).
Output (``--output-dir``, the job's ``champion`` output): ``champion.json`` = ``{"package_arn", "version",
"model_data_url"}`` and ``model.tar.gz``; or ``champion.json`` = ``{"none": "<why>"}`` alone (no Approved package
yet: the first model is judged on the threshold only). Any error (access denied, a missing artifact) fails the job:
registering without the comparison the config asks for is never the fallback.

The champion is the one Approved when this step runs (at the start of the execution, in parallel with Preprocess).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Dict, Optional, Sequence

PROCESSING_BASE = "/opt/ml/processing"
CHAMPION_FILE = "champion.json"
MODEL_FILE = "model.tar.gz"
_GROUP_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:([a-z0-9-]+):\d{12}:model-package-group/[^/]+$")


class ChampionError(RuntimeError):
    """The champion cannot be resolved; the message is meant for the person running the pipeline."""


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-package-group", default=None,
                        help="the model's package group, name or ARN (an ARN names the region to call); none: "
                             "no registry (a local run), champion.json says so")
    parser.add_argument("--region", default=None, help="default: the group ARN's region, else the environment's")
    parser.add_argument("--output-dir", default=os.path.join(PROCESSING_BASE, "champion"))
    return parser.parse_args(argv)


def region_of(group: str, region: Optional[str] = None) -> Optional[str]:
    """``region`` if given, else the region of a group ARN, else None (boto3's own resolution)."""
    if region:
        return region
    match = _GROUP_ARN.match(group)
    return match.group(1) if match else None


def split_s3_uri(uri: str):
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ChampionError("the champion's ModelDataUrl {!r} is not an s3://bucket/key URI".format(uri))
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def latest_approved(sagemaker: Any, group: str) -> Optional[Dict[str, Any]]:
    """The newest Approved package summary of ``group``, or None."""
    response = sagemaker.list_model_packages(
        ModelPackageGroupName=group, ModelApprovalStatus="Approved", SortBy="CreationTime", SortOrder="Descending",
        MaxResults=1,
    )
    summaries = response.get("ModelPackageSummaryList") or []
    return summaries[0] if summaries else None


def resolve(sagemaker: Any, s3: Any, group: str, output_dir: str) -> Dict[str, Any]:
    """Write champion.json (and model.tar.gz) to ``output_dir``; return what champion.json holds."""
    os.makedirs(output_dir, exist_ok=True)
    summary = latest_approved(sagemaker, group)
    if summary is None:
        record: Dict[str, Any] = {"none": "no Approved package in {} yet".format(group)}
    else:
        arn = summary["ModelPackageArn"]
        package = sagemaker.describe_model_package(ModelPackageName=arn)
        containers = (package.get("InferenceSpecification") or {}).get("Containers") or []
        url = containers[0].get("ModelDataUrl") if containers else None
        if not url:
            raise ChampionError("the champion {} has no ModelDataUrl".format(arn))
        bucket, key = split_s3_uri(url)
        s3.download_file(bucket, key, os.path.join(output_dir, MODEL_FILE))
        record = {"package_arn": arn, "version": package.get("ModelPackageVersion"), "model_data_url": url}
    with open(os.path.join(output_dir, CHAMPION_FILE), "w") as handle:
        json.dump(record, handle, indent=2)
    return record


def run(args: argparse.Namespace) -> Dict[str, Any]:
    if not args.model_package_group:
        os.makedirs(args.output_dir, exist_ok=True)
        record = {"none": "no model package group given (a run without a registry)"}
        with open(os.path.join(args.output_dir, CHAMPION_FILE), "w") as handle:
            json.dump(record, handle, indent=2)
        return record
    import boto3

    region = region_of(args.model_package_group, args.region)
    session = boto3.session.Session(region_name=region) if region else boto3.session.Session()
    return resolve(session.client("sagemaker"), session.client("s3"), args.model_package_group, args.output_dir)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        record = run(args)
    except ChampionError as exc:
        print("ResolveChampion failed: {}".format(exc), file=sys.stderr)
        return 2
    except Exception as exc:  # botocore's ClientError (AccessDenied ...), NoCredentialsError, EndpointConnectionError
        print("ResolveChampion failed: {}: {}".format(type(exc).__name__, exc), file=sys.stderr)
        return 2
    if "none" in record:
        print("No champion: {}; the challenger is judged on the threshold only".format(record["none"]))
    else:
        print("Champion: {} (version {}), model {}".format(record["package_arn"], record["version"],
                                                           record["model_data_url"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
