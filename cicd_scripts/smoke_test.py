"""Smoke test a deployed serving stack: the SageMaker endpoint and/or the Lambda Function URL (IAM auth).

    python -m cicd_scripts.smoke_test [--endpoint-name NAME] [--function-url URL] [--targets-file smoke-targets.json]
        [--metadata-file model_metadata.json [--rows N]] [--sample-file sample.json]  (at least one)
        [--csv-format encoded|raw] [--endpoint-timeout-minutes 30] [--poll-seconds 30] [--http-timeout-seconds 30]
        [--region REGION]

Sample rows ("instances") come from ``--sample-file`` (``[...]`` or ``{"instances": [...]}``; an instance is an
object of feature values, or a list of values) or are generated from ``--metadata-file`` model_metadata.json
(docs/CONTRACTS.md: categorical features cycle through their categories, numeric ones are 0.5, 0.6, ...).

Endpoint: waits for InService (describe_endpoint waiter), then invoke_endpoint with one CSV line per instance
(``encoded``: the model's ``encoded_columns`` per the contract, as the SageMaker XGBoost container expects; ``raw``:
the instance's values as given) and checks one finite number per row.

Function URL: POST ``{"instances": [...]}`` signed with SigV4 (service ``lambda``, region from the URL host), expects
200 and ``{"predictions": [...]}`` with one finite prediction per row (a number, or an object/list of numbers); then
POSTs ``{"instances": "not-a-list"}`` and expects a 4xx other than 401/403 (the function validates its input).

Exit codes: 0 every check passed; 1 a check failed (each failure is reported); 2 invalid arguments.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Optional, Sequence

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError, WaiterError

from cicd_scripts._common import (EXIT_OK, ArgumentParser, ScriptError, UsageError, client, error_code, error_message,
                                   log, read_json_file, run)

BAD_REQUEST_PAYLOAD: dict[str, Any] = {"instances": "not-a-list"}
FUNCTION_URL_REGION_RE = re.compile(r"\.lambda-url\.([a-z0-9-]+)\.on\.aws$")
PREDICTION_KEYS = ("prediction", "score", "probability", "value", "label")


class CheckFailed(ScriptError):
    pass


# ----------------------------------------------------------------------------------------------------------------
# Sample rows
# ----------------------------------------------------------------------------------------------------------------
def _validate_metadata(meta: Any) -> dict[str, Any]:
    if not isinstance(meta, dict) or not isinstance(meta.get("features"), list) or not meta["features"]:
        raise UsageError("--metadata-file has no 'features' list (see docs/CONTRACTS.md, model_metadata.json)")
    for f in meta["features"]:
        if not isinstance(f, dict) or "name" not in f or f.get("type") not in ("categorical", "numeric"):
            raise UsageError(f"--metadata-file feature {f!r} needs a name and type categorical or numeric")
        if f["type"] == "categorical" and not f.get("categories"):
            raise UsageError(f"--metadata-file categorical feature {f['name']!r} has no categories")
    if not isinstance(meta.get("encoded_columns"), list) or not meta["encoded_columns"]:
        raise UsageError("--metadata-file has no 'encoded_columns' list")
    return meta


def instances_from_metadata(meta: dict[str, Any], rows: int) -> list[dict[str, Any]]:
    """``rows`` instances: categorical features cycle through their categories, numerics are 0.5, 0.6, ..."""
    out = []
    for i in range(rows):
        row: dict[str, Any] = {}
        for f in meta["features"]:
            if f["type"] == "categorical":
                cats = f["categories"]
                row[f["name"]] = cats[i % len(cats)]
            else:
                row[f["name"]] = round(0.5 + 0.1 * i, 4)
        out.append(row)
    return out


def encode_instance(instance: dict[str, Any], meta: dict[str, Any]) -> list[float]:
    """The contract's encoding: categorical -> one-hot ``<name>_<category>``, numeric -> float, ``encoded_columns``
    order."""
    values: dict[str, float] = {}
    for f in meta["features"]:
        name = f["name"]
        if name not in instance:
            raise UsageError(f"sample instance {instance!r} lacks feature {name!r}")
        if f["type"] == "categorical":
            for cat in f["categories"]:
                values[f"{name}_{cat}"] = 1.0 if str(instance[name]) == str(cat) else 0.0
        else:
            values[name] = float(instance[name])
    missing = [c for c in meta["encoded_columns"] if c not in values]
    if missing:
        raise UsageError(f"--metadata-file encoded_columns {missing} do not come from its features")
    return [values[c] for c in meta["encoded_columns"]]


def csv_body(instances: Sequence[Any], meta: Optional[dict[str, Any]], csv_format: str) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for inst in instances:
        if csv_format == "encoded":
            if meta is None:
                raise UsageError("--csv-format encoded needs --metadata-file (or use --csv-format raw)")
            if not isinstance(inst, dict):
                raise UsageError("--csv-format encoded needs instances as objects of feature values")
            writer.writerow(encode_instance(inst, meta))
        else:
            writer.writerow(list(inst.values()) if isinstance(inst, dict) else list(inst))
    return buf.getvalue()


def load_sample_file(path: str) -> list[Any]:
    doc = read_json_file(path, "--sample-file")
    instances = doc.get("instances") if isinstance(doc, dict) else doc
    if not isinstance(instances, list) or not instances:
        raise UsageError(f"--sample-file '{path}' must hold a non-empty list of instances or {{\"instances\": [...]}}")
    for inst in instances:
        if not isinstance(inst, (dict, list)):
            raise UsageError(f"--sample-file '{path}': instance {inst!r} is neither an object nor a list")
    return instances


# ----------------------------------------------------------------------------------------------------------------
# Predictions
# ----------------------------------------------------------------------------------------------------------------
def _numbers(pred: Any) -> Optional[list[float]]:
    """The numbers a prediction holds (a number, an object of numbers, a list of numbers), None if none."""
    if isinstance(pred, bool):
        return [float(pred)]
    if isinstance(pred, (int, float)):
        return [float(pred)]
    if isinstance(pred, dict):
        nums = [float(pred[k]) for k in PREDICTION_KEYS if isinstance(pred.get(k), (int, float))]
        if not nums:
            nums = [float(v) for v in pred.values() if isinstance(v, (int, float))]
        return nums or None
    if isinstance(pred, list):
        nums = [float(v) for v in pred if isinstance(v, (int, float))]
        return nums if nums and len(nums) == len(pred) else None
    return None


def check_predictions(predictions: Any, rows: int, where: str) -> list[Any]:
    if not isinstance(predictions, list):
        raise CheckFailed(f"{where}: expected a list of predictions, got {type(predictions).__name__}")
    if len(predictions) != rows:
        raise CheckFailed(f"{where}: {len(predictions)} predictions for {rows} rows")
    for i, pred in enumerate(predictions):
        nums = _numbers(pred)
        if nums is None:
            raise CheckFailed(f"{where}: prediction {i} is not numeric: {pred!r}")
        if not all(math.isfinite(n) for n in nums):
            raise CheckFailed(f"{where}: prediction {i} is not finite: {pred!r}")
    return predictions


def parse_endpoint_body(body: bytes, content_type: str) -> list[Any]:
    """JSON (a list, or ``{"predictions": [...]}``) or CSV text (one line per row; a single line of comma-separated
    values is one value per row, as the XGBoost container answers a batch)."""
    text = body.decode("utf-8", errors="replace").strip()
    if "json" in (content_type or "").lower():
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            raise CheckFailed(f"the endpoint answered {content_type} that is not JSON: {text[:200]!r}") from None
        return doc.get("predictions") if isinstance(doc, dict) else doc
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) == 1:
        cells: list[Any] = [c.strip() for c in lines[0].split(",")]
    else:
        cells = [[c.strip() for c in ln.split(",")] for ln in lines]

    def num(cell: str) -> Any:
        try:
            return float(cell)
        except ValueError:
            raise CheckFailed(f"the endpoint answered a non-numeric prediction {cell!r}") from None

    return [num(c) if isinstance(c, str) else [num(x) for x in c] for c in cells]


# ----------------------------------------------------------------------------------------------------------------
# Endpoint
# ----------------------------------------------------------------------------------------------------------------
def wait_in_service(sm: Any, endpoint_name: str, timeout_minutes: float, poll_seconds: float) -> None:
    delay = max(int(poll_seconds), 0)
    attempts = max(1, math.ceil(timeout_minutes * 60 / max(delay, 1)))
    try:
        sm.get_waiter("endpoint_in_service").wait(
            EndpointName=endpoint_name, WaiterConfig={"Delay": delay, "MaxAttempts": attempts}
        )
    except WaiterError as exc:
        last = exc.last_response or {}
        status = last.get("EndpointStatus")
        if status == "Failed":
            raise CheckFailed(
                f"endpoint {endpoint_name} is Failed: {last.get('FailureReason') or 'no failure reason given'}"
            ) from None
        err = last.get("Error") or {}
        if err:
            raise CheckFailed(f"endpoint {endpoint_name}: {err.get('Code')}: {err.get('Message')}") from None
        raise CheckFailed(
            f"endpoint {endpoint_name} is still {status} after {timeout_minutes:g} minutes (not InService)"
        ) from None


def check_endpoint(sm: Any, runtime: Any, endpoint_name: str, instances: Sequence[Any],
                   meta: Optional[dict[str, Any]], csv_format: str, timeout_minutes: float,
                   poll_seconds: float) -> list[Any]:
    body = csv_body(instances, meta, csv_format)
    wait_in_service(sm, endpoint_name, timeout_minutes, poll_seconds)
    where = f"endpoint {endpoint_name}"
    try:
        resp = runtime.invoke_endpoint(EndpointName=endpoint_name, ContentType="text/csv", Accept="text/csv",
                                       Body=body.encode("utf-8"))
    except ClientError as exc:
        code, err = error_code(exc), exc.response.get("Error", {})
        if code == "ModelError":
            status = exc.response.get("OriginalStatusCode", "?")
            original = exc.response.get("OriginalMessage") or error_message(exc)
            logs = exc.response.get("LogStreamArn")
            raise CheckFailed(
                f"{where}: the model failed on the sample (ModelError, container status {status}: {original})"
                + (f"; logs: {logs}" if logs else "")
            ) from None
        raise CheckFailed(f"{where}: invoke_endpoint failed: {code}: {err.get('Message', error_message(exc))}") from None
    predictions = parse_endpoint_body(resp["Body"].read(), resp.get("ContentType", ""))
    return check_predictions(predictions, len(instances), where)


# ----------------------------------------------------------------------------------------------------------------
# Function URL
# ----------------------------------------------------------------------------------------------------------------
def function_url_region(url: str, default: Optional[str]) -> str:
    host = urllib.parse.urlparse(url).hostname or ""
    m = FUNCTION_URL_REGION_RE.search(host)
    region = m.group(1) if m else default
    if not region:
        raise UsageError(f"cannot tell the region of {url}; pass --region")
    return region


def signed_post(url: str, payload: Any, *, credentials: Any, region: str,
                timeout: float) -> tuple[int, bytes]:
    """POST JSON signed with SigV4 for ``lambda``; (status, body). HTTP errors are returned, not raised."""
    data = json.dumps(payload).encode("utf-8")
    request = AWSRequest(method="POST", url=url, data=data, headers={"Content-Type": "application/json"})
    SigV4Auth(credentials, "lambda", region).add_auth(request)
    req = urllib.request.Request(url, data=data, headers=dict(request.headers.items()), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (https function URL)
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CheckFailed(f"function URL {url}: cannot reach it: {reason}") from None


def _auth_hint(status: int) -> str:
    return (
        f"HTTP {status}: the signed request was refused; the build role needs lambda:InvokeFunctionUrl on the "
        "function (and the URL's auth type must be AWS_IAM)"
    )


def check_function_url(url: str, instances: Sequence[Any], *, credentials: Any, region: str,
                       timeout: float) -> list[Any]:
    where = f"function URL {url}"
    status, body = signed_post(url, {"instances": list(instances)}, credentials=credentials, region=region,
                               timeout=timeout)
    text = body.decode("utf-8", errors="replace")
    if status in (401, 403):
        raise CheckFailed(f"{where}: {_auth_hint(status)}: {text[:300]}")
    if status != 200:
        raise CheckFailed(f"{where}: HTTP {status} for a valid request: {text[:300]}")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise CheckFailed(f"{where}: the response is not JSON: {text[:200]!r}") from None
    if not isinstance(doc, dict) or "predictions" not in doc:
        raise CheckFailed(f"{where}: the response has no 'predictions': {text[:200]}")
    return check_predictions(doc["predictions"], len(instances), where)


def check_function_url_rejects_bad_request(url: str, *, credentials: Any, region: str, timeout: float) -> int:
    where = f"function URL {url}"
    status, body = signed_post(url, BAD_REQUEST_PAYLOAD, credentials=credentials, region=region, timeout=timeout)
    text = body.decode("utf-8", errors="replace")[:300]
    if status in (401, 403):
        raise CheckFailed(f"{where}: bad request check: {_auth_hint(status)}: {text}")
    if not 400 <= status < 500:
        raise CheckFailed(
            f"{where}: a malformed request ({json.dumps(BAD_REQUEST_PAYLOAD)}) got HTTP {status}, expected 4xx: "
            f"{text}"
        )
    return status


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------
def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m cicd_scripts.smoke_test",
                       description="Smoke test the serving endpoint and/or Lambda Function URL.")
    p.add_argument("--endpoint-name")
    p.add_argument("--function-url")
    p.add_argument("--targets-file", help="deploy_serving --targets-file (endpoint_name, function_url)")
    p.add_argument("--metadata-file", help="model_metadata.json: generates the sample rows (unless --sample-file) "
                                           "and encodes the endpoint CSV")
    p.add_argument("--sample-file", help="JSON instances to send instead of generated ones")
    p.add_argument("--rows", type=int, default=3, help="rows generated from --metadata-file (default 3)")
    p.add_argument("--csv-format", choices=("encoded", "raw"), default=None,
                   help="endpoint CSV: encoded (default with --metadata-file) or raw (default without it)")
    p.add_argument("--endpoint-timeout-minutes", type=float, default=30.0)
    p.add_argument("--poll-seconds", type=float, default=30.0)
    p.add_argument("--http-timeout-seconds", type=float, default=30.0)
    p.add_argument("--region", help="default: the AWS_REGION of the environment")
    return p


def main(argv: Optional[Sequence[str]] = None, *, sagemaker: Any = None, runtime: Any = None,
         credentials: Any = None) -> int:
    def body(args: argparse.Namespace) -> int:
        endpoint_name, function_url = args.endpoint_name, args.function_url
        if args.targets_file:
            targets = read_json_file(args.targets_file, "--targets-file")
            if not isinstance(targets, dict):
                raise UsageError(f"--targets-file '{args.targets_file}' is not a JSON object")
            endpoint_name = endpoint_name or targets.get("endpoint_name")
            function_url = function_url or targets.get("function_url")
        if not endpoint_name and not function_url:
            raise UsageError("nothing to test: pass --endpoint-name and/or --function-url (or --targets-file)")
        if function_url and urllib.parse.urlparse(function_url).scheme not in ("https", "http"):
            raise UsageError(f"--function-url {function_url!r} is not an http(s) URL")
        if args.rows < 1:
            raise UsageError("--rows must be at least 1")

        if not args.metadata_file and not args.sample_file:
            raise UsageError("pass --metadata-file (model_metadata.json) and/or --sample-file for the sample rows")
        meta: Optional[dict[str, Any]] = None
        if args.metadata_file:
            meta = _validate_metadata(read_json_file(args.metadata_file, "--metadata-file"))
        if args.sample_file:
            instances: list[Any] = load_sample_file(args.sample_file)
        else:
            assert meta is not None
            instances = instances_from_metadata(meta, args.rows)
        csv_format = args.csv_format or ("encoded" if meta is not None else "raw")
        if endpoint_name:
            csv_body(instances, meta, csv_format)  # argument errors before any AWS call

        checks: list[tuple[str, Callable[[], Any]]] = []
        if endpoint_name:
            sm = sagemaker or client("sagemaker", args.region)
            rt = runtime or client("sagemaker-runtime", args.region)
            checks.append((f"endpoint {endpoint_name}", lambda: check_endpoint(
                sm, rt, endpoint_name, instances, meta, csv_format, args.endpoint_timeout_minutes,
                args.poll_seconds)))
        if function_url:
            session = boto3.session.Session(region_name=args.region)
            region = function_url_region(function_url, args.region or session.region_name)
            creds = credentials
            if creds is None:
                live = session.get_credentials()
                if live is None:
                    raise ScriptError("no AWS credentials to sign the function URL request with")
                creds = live.get_frozen_credentials()
            checks.append((f"function URL {function_url}", lambda: check_function_url(
                function_url, instances, credentials=creds, region=region, timeout=args.http_timeout_seconds)))
            checks.append((f"function URL {function_url} rejects a malformed request",
                           lambda: check_function_url_rejects_bad_request(
                               function_url, credentials=creds, region=region, timeout=args.http_timeout_seconds)))

        results: dict[str, Any] = {}
        failures: list[str] = []
        for name, check in checks:
            try:
                results[name] = check()
                log(f"PASS {name}: {results[name]}")
            except CheckFailed as exc:
                failures.append(str(exc))
                log(f"FAIL {exc}")
        print(json.dumps({"rows": len(instances), "passed": sorted(results), "failed": failures}, indent=2),
              file=sys.stdout, flush=True)
        if failures:
            raise ScriptError(f"smoke test failed ({len(failures)} of {len(checks)} checks): " + "; ".join(failures))
        return EXIT_OK

    return run(_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
