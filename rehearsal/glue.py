"""Rehearse the data stack's Glue ETL job and its crawler as AWS Glue runs them, from ``cdk.out``.

The job (``run_glue_job``), as Glue 5.0 runs a ``glueetl`` job (Glue developer guide: "Using job parameters in AWS
Glue jobs", "Using Python libraries with AWS Glue", "Including Python files with PySpark native features"):

1. The ``AWS::Glue::Job`` of the stack, resolved: ``Command.ScriptLocation``, ``DefaultArguments``, ``Role``,
   ``GlueVersion``, ``SecurityConfiguration``. The asset objects the job names (script, ``--extra-py-files``,
   ``--extra-files``) are put where ``cdk-assets`` puts them.
2. Staging under the job role's credentials: each object is downloaded into the run's directory under the object's
   own name (``<hash>.py``, ``<hash>.zip``), as Glue does. ``--extra-py-files`` go on the Python path as PySpark's
   ``--py-files`` do: a ``.zip`` (or ``.egg``/``.whl``) itself, a ``.py`` file through its directory, so a module
   shipped as ``<hash>.py`` is importable only as ``<hash>`` (aws/aws-cdk#20481). ``--extra-files`` are copied into
   the working directory.
3. ``python <script> --JOB_ID .. --JOB_RUN_ID .. --JOB_NAME <name> <DefaultArguments as --key value>`` in a
   subprocess: a clean environment (no developer AWS settings, nothing of the repository on the path), the job role's
   credentials against the moto stand-in (IAM authorization on), the ``awsglue`` stand-in
   (``rehearsal/awsglue_standin``, local PySpark; see its docstring for S3 and bookmarks) first on ``PYTHONPATH``.
   Job bookmarks persist between runs of one rehearsal (``<workdir>/glue-state``).

4. After the job: the declared ``AWS::Glue::Table`` of its ``--curated_path`` must describe the Parquet objects it
   wrote, and a crawler, when a conditional trigger starts one after the job, runs under its role
   (``rehearsal.glue_catalog``).

A job's ``Connections`` (the data stack's jobs in a VPC) must each be an ``AWS::Glue::Connection`` of the stack of
type ``NETWORK`` with a subnet (``check_connections``); the run itself is not placed in a network.

One job per dataset (``read_jobs``): the data stack's jobs are told apart by the ``name`` of their
``--dataset_schema`` document (``dataset_name``).

Not emulated: the job's own CloudWatch log groups, metrics, Glue's workers (Spark runs ``local[2]``), KMS (keys are
passed, not checked), bookmark encryption, the workflow's event batching. Reads ``data/<dataset>.csv`` from the
repository as raw input data only (not deployed code).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from rehearsal.assembly import RehearsalError, Stack, resolved_properties
from rehearsal.cloud import DENIALS
from rehearsal.context import Rehearsal, clean_env, split_s3_uri
from rehearsal.glue_catalog import (  # noqa: F401 (re-exported: the crawler was part of this module)
    check_crawlers, check_table, rehearse_crawler, role_arn, security_configuration, validate_crawler,
)

STANDIN_DIR = Path(__file__).resolve().parent / "awsglue_standin"
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
#: Glue version -> (Python, Spark) of its runtime (Glue developer guide, "AWS Glue versions").
GLUE_RUNTIMES = {"5.0": ("3.11", "3.5"), "4.0": ("3.10", "3.3"), "3.0": ("3.7", "3.1")}
CDK_ISSUE_PY_FILES = "aws/aws-cdk#20481"
JOB_TIMEOUT_SECONDS = 300


@dataclass
class GlueJob:
    stack: Stack
    logical_id: str
    name: str
    role_arn: str
    glue_version: str
    script_uri: str
    arguments: dict[str, str]
    security_configuration: Optional[str]
    extra_py_files: list[str] = field(default_factory=list)
    extra_files: list[str] = field(default_factory=list)
    #: Logical IDs of the job's NETWORK connections, in the job's order (none: Glue's own network).
    connections: list[str] = field(default_factory=list)


def _uris(value: Optional[str]) -> list[str]:
    return [u.strip() for u in (value or "").split(",") if u.strip()]


def check_connections(stack: Stack, logical: str) -> list[str]:
    """The logical IDs of the connections the job ``logical`` lists in ``Connections``, in order; each must be an
    ``AWS::Glue::Connection`` of the stack (by ``Ref`` or by its ``ConnectionInput.Name``) of type ``NETWORK`` with a
    ``PhysicalConnectionRequirements.SubnetId``: Glue places a run in the subnet of the first healthy one, and a job
    of this platform reaches nothing but AWS services, through the VPC's endpoints."""
    listed = ((stack.resources[logical].get("Properties") or {}).get("Connections") or {}).get("Connections") or []
    connections = stack.of_type("AWS::Glue::Connection")
    by_name = {(c.get("Properties") or {}).get("ConnectionInput", {}).get("Name"): k for k, c in connections.items()}
    found = []
    for entry in listed:
        ref = entry.get("Ref") if isinstance(entry, dict) else None
        conn_logical = ref if ref in connections else by_name.get(entry) if isinstance(entry, str) else None
        if conn_logical is None:
            raise RehearsalError(f"{stack.name}/{logical}: Connections lists {json.dumps(entry)}, which is no "
                                 "AWS::Glue::Connection of the stack: Glue would fail the run (connection not found)")
        connection_input = (connections[conn_logical].get("Properties") or {}).get("ConnectionInput") or {}
        kind = connection_input.get("ConnectionType")
        if kind != "NETWORK":
            raise RehearsalError(f"{stack.name}/{logical}: connection {conn_logical} is of type {kind!r}, not NETWORK: "
                                 "the job's connections only place it in the VPC (no data store behind them)")
        if not (connection_input.get("PhysicalConnectionRequirements") or {}).get("SubnetId"):
            raise RehearsalError(f"{stack.name}/{logical}: NETWORK connection {conn_logical} has no "
                                 "PhysicalConnectionRequirements.SubnetId: Glue has no subnet to run the job in")
        found.append(conn_logical)
    return found


def _job(rh: Rehearsal, stack: Stack, logical: str) -> GlueJob:
    props = resolved_properties(rh.assembly, stack, logical)
    command = props.get("Command") or {}
    if command.get("Name") != "glueetl":
        raise RehearsalError(f"{stack.name}/{logical}: Command.Name {command.get('Name')!r}: only glueetl is rehearsed")
    arguments = {str(k): "" if v is None else str(v) for k, v in (props.get("DefaultArguments") or {}).items()}
    for key in arguments:
        if not key.startswith("--"):
            raise RehearsalError(f"{stack.name}/{logical}: DefaultArguments key {key!r} must start with '--'")
    return GlueJob(
        stack=stack,
        logical_id=logical,
        name=rh.assembly.resolver.name(stack, logical),
        role_arn=role_arn(props["Role"]),
        glue_version=str(props.get("GlueVersion", "")),
        script_uri=command["ScriptLocation"],
        arguments=arguments,
        security_configuration=props.get("SecurityConfiguration"),
        extra_py_files=_uris(arguments.get("--extra-py-files")),
        extra_files=_uris(arguments.get("--extra-files")),
        connections=check_connections(stack, logical),
    )


def read_jobs(rh: Rehearsal, stack_suffix: str = "-data") -> dict[str, GlueJob]:
    """The stack's ``glueetl`` jobs, resolved, by dataset (in template order); two jobs of one dataset: an error."""
    stack = rh.assembly.stack(stack_suffix)
    jobs: dict[str, GlueJob] = {}
    for logical in stack.of_type("AWS::Glue::Job"):
        job = _job(rh, stack, logical)
        dataset = dataset_name(job.arguments)
        if dataset in jobs:
            raise RehearsalError(f"{stack.name}: Glue jobs {jobs[dataset].name} and {job.name} both process dataset "
                                 f"{dataset!r}")
        jobs[dataset] = job
    if not jobs:
        raise RehearsalError(f"{stack.name}: no AWS::Glue::Job")
    return jobs


def read_job(rh: Rehearsal, stack_suffix: str = "-data", dataset: Optional[str] = None) -> GlueJob:
    """The stack's job of ``dataset`` (None: the stack's only job)."""
    jobs = read_jobs(rh, stack_suffix)
    if dataset is None:
        if len(jobs) != 1:
            raise RehearsalError(f"{stack_suffix}: {len(jobs)} Glue jobs ({', '.join(jobs)}): name the dataset")
        return next(iter(jobs.values()))
    if dataset not in jobs:
        raise RehearsalError(f"{stack_suffix}: no Glue job of dataset {dataset!r} (jobs of: {', '.join(jobs)})")
    return jobs[dataset]


def _download(s3: Any, uri: str, target_dir: Path) -> Path:
    bucket, key = split_s3_uri(uri)
    target = target_dir / key.rsplit("/", 1)[-1]
    try:
        s3.download_file(bucket, key, str(target))
    except Exception as exc:  # noqa: BLE001 (botocore's ClientError, AccessDenied included)
        raise RehearsalError(f"Glue cannot fetch {uri} under the job role: {exc}") from None
    return target


def stage_job(rh: Rehearsal, job: GlueJob, run_dir: Path) -> tuple[Path, list[str], Path]:
    """Upload the job's asset objects and download them as Glue does. Returns (script, Python path, working dir)."""
    for uri in [job.script_uri, *job.extra_py_files, *job.extra_files]:
        rh.cloud.upload_asset(uri)
    s3 = rh.cloud.client("s3", job.role_arn)
    staged = run_dir / "staged"
    staged.mkdir(parents=True)
    script = _download(s3, job.script_uri, staged)
    python_path: list[str] = []
    for uri in job.extra_py_files:
        local = _download(s3, uri, staged)
        entry = str(local.parent) if local.suffix == ".py" else str(local)
        if entry not in python_path:
            python_path.append(entry)
    cwd = run_dir / "cwd"
    cwd.mkdir()
    for uri in job.extra_files:
        shutil.copy2(_download(s3, uri, staged), cwd)
    return script, python_path, cwd


def _hash_named_modules(job: GlueJob) -> list[str]:
    return [u for u in job.extra_py_files if u.endswith(".py")]


def _diagnose_failure(job: GlueJob, stderr: str, denials: list) -> str:
    missing = re.findall(r"ModuleNotFoundError: No module named '([^']+)'", stderr)
    py_files = _hash_named_modules(job)
    if missing and py_files:
        staged = ", ".join(f"{u.rsplit('/', 1)[-1]} (module `{Path(u).stem}`)" for u in py_files)
        return (
            f"Glue job {job.name}: `import {missing[0]}` fails: --extra-py-files ships .py objects that Glue stages "
            f"under their object names, {staged}, so `{missing[0]}` is not importable ({CDK_ISSUE_PY_FILES}); "
            f"ship the job's modules in a .zip (module files at its root)"
        )
    if missing:
        return f"Glue job {job.name}: `import {missing[0]}` fails: no --extra-py-files entry provides it"
    if denials:
        return f"Glue job {job.name} failed: AccessDenied under its role: " + "; ".join(str(d) for d in denials)
    tail = "\n".join(stderr.strip().splitlines()[-25:])
    return f"Glue job {job.name} failed:\n{tail}"


def dataset_name(arguments: dict[str, Any]) -> str:
    """The dataset a job's arguments name: ``--dataset``, else the ``name`` of its ``--dataset_schema`` document."""
    if arguments.get("--dataset"):
        return arguments["--dataset"]
    try:
        return str(json.loads(arguments.get("--dataset_schema") or "{}").get("name") or "")
    except (ValueError, AttributeError):
        raise RehearsalError(f"--dataset_schema is not a JSON document: {arguments.get('--dataset_schema')!r}") from None


def _default_raw_files(dataset: str) -> dict[str, Path]:
    path = DATA_DIR / f"{dataset}.csv"
    if not path.exists():
        raise RehearsalError(f"no sample data for dataset {dataset!r} at {path}")
    return {path.name: path}


def _list_keys(s3: Any, uri: str) -> set[str]:
    bucket, prefix = split_s3_uri(uri)
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return keys


def _check_runtime(rh: Rehearsal, glue_version: str) -> dict:
    expected = GLUE_RUNTIMES.get(glue_version)
    probe = subprocess.run(
        [rh.python, "-c", "import sys, pyspark; print('%d.%d' % sys.version_info[:2], pyspark.__version__)"],
        capture_output=True, text=True, env=clean_env(), timeout=60,
    )
    if probe.returncode != 0:
        raise RehearsalError(f"the Glue stand-in needs PySpark in {rh.python}: {probe.stderr.strip()[-300:]}")
    py, spark = probe.stdout.split()
    info = {"glue_version": glue_version, "python": py, "spark": spark}
    if expected and (py != expected[0] or not spark.startswith(expected[1] + ".")):
        rh.log(f"glue: Glue {glue_version} runs Python {expected[0]} / Spark {expected[1]}; the stand-in has "
               f"Python {py} / Spark {spark}")
        info["runtime_mismatch"] = True
    return info


def _job_env(rh: Rehearsal, job: GlueJob, python_path: list[str]) -> dict[str, str]:
    """The job process's environment: the role's credentials, the stand-in and staged modules, local Spark."""
    state_dir = rh.workdir / "glue-state"
    state_dir.mkdir(parents=True, exist_ok=True)
    encryption = security_configuration(rh, job.stack, job.security_configuration)
    s3_kms = next(
        (e.get("KmsKeyArn") for e in encryption.get("S3Encryptions", []) if e.get("S3EncryptionMode") == "SSE-KMS"),
        None,
    )
    return clean_env({
        **rh.cloud.environ(job.role_arn),
        "PYTHONPATH": ":".join([str(STANDIN_DIR), *python_path]),
        "PYSPARK_PYTHON": rh.python,
        "PYSPARK_DRIVER_PYTHON": rh.python,
        "PYSPARK_SUBMIT_ARGS": "--master local[2] --conf spark.ui.enabled=false --conf spark.ui.showConsoleProgress=false "
                               "--conf spark.sql.shuffle.partitions=2 --conf spark.default.parallelism=2 "
                               "--conf spark.sql.session.timeZone=UTC pyspark-shell",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "REHEARSAL_GLUE_STATE_DIR": str(state_dir),
        "TZ": "UTC",
        **({"REHEARSAL_GLUE_S3_KMS_KEY": s3_kms} if s3_kms else {}),
    })


def _execute(rh: Rehearsal, job: GlueJob, run_id: str) -> tuple[dict, str, list]:
    """Stage and run the job once (step 2 and 3 of the module docstring): (etl_counts, script name, denials)."""
    run_dir = rh.scratch(f"glue-{run_id[:11]}")
    script, python_path, cwd = stage_job(rh, job, run_dir)
    argv = [rh.python, str(script), "--JOB_ID", f"j_{uuid.uuid5(uuid.NAMESPACE_URL, job.name).hex}",
            "--JOB_RUN_ID", run_id, "--JOB_NAME", job.name]
    for key, value in job.arguments.items():
        argv += [key, value]
    first_denial = len(DENIALS)
    rh.log(f"glue: {job.name} ({job.glue_version}) {script.name} under {job.role_arn.rsplit('/', 1)[-1]}")
    try:
        proc = subprocess.run(argv, cwd=cwd, env=_job_env(rh, job, python_path), capture_output=True, text=True,
                              timeout=JOB_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise RehearsalError(f"Glue job {job.name} did not finish within {JOB_TIMEOUT_SECONDS} s") from None
    (run_dir / "stdout.log").write_text(proc.stdout)
    (run_dir / "stderr.log").write_text(proc.stderr)
    denials = DENIALS[first_denial:]
    if proc.returncode != 0:
        raise RehearsalError(_diagnose_failure(job, proc.stderr, denials))
    counts = None
    for line in proc.stdout.splitlines():
        if line.startswith("{") and '"etl_counts"' in line:
            counts = json.loads(line)
    if counts is None:
        raise RehearsalError(f"Glue job {job.name} succeeded without its etl_counts log line")
    return counts, script.name, denials


def run_glue_job(
    rh: Rehearsal,
    stack_suffix: str = "-data",
    raw_files: Optional[dict[str, Path]] = None,
    *,
    dataset: Optional[str] = None,
    crawl: bool = True,
) -> dict:
    """Run the stack's Glue job of ``dataset`` (None: its only job) as Glue does, check the declared table against
    what it wrote, then run its crawler if it has one; return the summary (also ``rh.facts["glue"][<dataset>]``).

    ``raw_files``: object name (under the job's ``--raw_path``) -> local file, uploaded with an admin client before
    the run (default: ``data/<dataset>.csv``). Raises :class:`RehearsalError` naming the defect when the job, the
    table, the trigger or the crawler would fail in AWS.
    """
    started = time.monotonic()
    job = read_job(rh, stack_suffix, dataset)
    if job.role_arn not in rh.cloud.roles:
        raise RehearsalError(f"{job.stack.name}/{job.logical_id}: role {job.role_arn} is not a role of the assembly")
    if crawl:  # what CloudFormation / CreateCrawler reject fails before anything runs
        check_crawlers(rh, job)
    runtime = _check_runtime(rh, job.glue_version)
    args = job.arguments
    dataset = dataset_name(args)
    raw_path = args.get("--raw_path")
    if not raw_path:
        raise RehearsalError(f"Glue job {job.name}: no --raw_path argument")
    admin_s3 = rh.cloud.admin("s3")
    bucket, prefix = split_s3_uri(raw_path)
    for name, path in (_default_raw_files(dataset) if raw_files is None else raw_files).items():
        admin_s3.upload_file(str(path), bucket, prefix + name)

    outputs = {k: args[k] for k in ("--curated_path", "--quarantine_path") if args.get(k)}
    before = {k: _list_keys(admin_s3, uri) for k, uri in outputs.items()}
    run_id = "jr_" + uuid.uuid4().hex
    counts, script_name, denials = _execute(rh, job, run_id)
    written = {k: sorted(_list_keys(admin_s3, uri) - before[k]) for k, uri in outputs.items()}
    summary: dict[str, Any] = {
        "dataset": dataset,
        "job_name": job.name,
        "job_run_id": run_id,
        "script": script_name,
        "extra_py_files": [u.rsplit("/", 1)[-1] for u in job.extra_py_files],
        "runtime": runtime,
        "etl_counts": counts,
        "curated_keys": written.get("--curated_path", []),
        "quarantine_keys": written.get("--quarantine_path", []),
        "denials": [str(d) for d in denials],
        "table": check_table(rh, job, written.get("--curated_path", [])),
    }
    if crawl:
        summary["crawler"] = rehearse_crawler(rh, job)
    summary["seconds"] = round(time.monotonic() - started, 1)
    rh.facts.setdefault("glue", {})[dataset] = summary
    rh.log(f"glue: {dataset}: {counts.get('rows_in')} rows in, {counts.get('rows_curated')} curated, "
           f"{counts.get('rows_rejected')} rejected; {len(summary['curated_keys'])} curated objects "
           f"({summary['seconds']} s)")
    return summary


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use rehearsal's runner (make rehearse)")
