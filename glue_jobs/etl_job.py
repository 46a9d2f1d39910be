"""AWS Glue 5.0 entry point of the raw -> curated ETL (the job's ``ScriptLocation``).

Everything Glue-specific lives in ``main``: argument resolution, ``GlueContext``, ``Job.init``/``Job.commit`` for job
bookmarks, and reading the raw CSV through a DynamicFrame with a ``transformation_ctx`` so that bookmarks only hand
over files not processed yet. The data work is ``etl_transform`` and ``dataset_spec`` (shipped in one zip with
``--extra-py-files``); the job-level policy (header and reject-ratio gates, what is written when, the JSON log line) is
``process``, plain PySpark, tested locally.

Job arguments:
    --JOB_NAME          set by Glue.
    --dataset_schema    the dataset schema document, JSON (``dataset_spec``): columns, CSV format, max_reject_ratio.
    --raw_path          e.g. ``s3://<raw bucket>/abalone/`` (read recursively).
    --curated_path      e.g. ``s3://<curated bucket>/abalone/``.
    --quarantine_path   e.g. ``s3://<curated bucket>/quarantine/abalone/``.
    --ingest_date       optional, default today (UTC): the ``ingest_date`` partition, ``YYYY-MM-DD``.

How Glue runs it: ``python <script object>.py --JOB_NAME <name> --<argument> <value> ...`` (the script is the CDK asset
``<hash>.py``), with every ``--extra-py-files`` object on ``sys.path``. ``etl_transform`` arrives inside a zip
(``mlops_constructs.glue_etl.package_python_modules``) because Glue would expose a plain ``<hash>.py`` under that name.

The whole ``awsglue`` surface used (all in ``main``), which is what a local stand-in must provide:
    ``awsglue.utils.getResolvedOptions(argv, names)`` -> dict of the named ``--name value`` arguments;
    ``awsglue.context.GlueContext(spark_context)`` with ``.spark_session`` and
    ``.create_dynamic_frame.from_options(connection_type, format, format_options, connection_options,
    transformation_ctx)`` -> a DynamicFrame, of which only ``.resolveChoice(choice="cast:string").toDF()`` is used;
    ``awsglue.job.Job(glue_context)`` with ``.init(job_name, args)`` and ``.commit()``.

When the input's header does not match the schema, or the reject ratio exceeds the document's ``max_reject_ratio``,
the rejected rows are still written to the quarantine (so they can be inspected), nothing is written to the curated
zone, and the job raises before ``Job.commit`` (the run fails, so the failure alarm fires): the bookmark does not
advance and the same files are processed again, and quarantined again, by the next run until they are fixed or
removed. A bookmark increment is one batch: one file with a wrong header fails the whole batch.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

if __package__:  # imported as glue_jobs.etl_job (tests)
    from . import etl_transform
else:  # run by Glue: etl_transform.py is a top-level module from --extra-py-files
    import etl_transform

#: Arguments Glue must pass (resolved with ``getResolvedOptions``, which fails when one is missing).
REQUIRED_ARGS = ["JOB_NAME", "dataset_schema", "raw_path", "curated_path", "quarantine_path"]
#: Optional arguments and their defaults (``None``: computed at run time).
OPTIONAL_ARGS: dict[str, Optional[str]] = {"ingest_date": None}
#: The DynamicFrame's transformation context, the key of the job bookmark state.
BOOKMARK_CTX = "raw"


class RejectRatioExceededError(RuntimeError):
    """More rows were rejected than the schema's ``max_reject_ratio`` allows: the job fails so that someone looks."""


@dataclass(frozen=True)
class JobOptions:
    """The optional job arguments, parsed and validated."""

    ingest_date: dt.date


def parse_dataset_schema(text: str) -> etl_transform.DatasetSpec:
    """Parse the ``--dataset_schema`` argument; raise a one-line ``ValueError`` naming the argument and the field."""
    try:
        document = json.loads(text)
    except ValueError as err:
        raise ValueError(f"--dataset_schema: not valid JSON ({err})") from None
    try:
        return etl_transform.DatasetSpec.from_document(document)
    except ValueError as err:
        raise ValueError(f"--dataset_schema: {err}") from None


def _raw_optional_args(argv: Sequence[str]) -> dict[str, str]:
    """Values of the optional arguments present in ``argv`` (``--name value`` or ``--name=value``; last one wins)."""
    found: dict[str, str] = {}
    for i, token in enumerate(argv):
        for name in OPTIONAL_ARGS:
            flag = f"--{name}"
            if token == flag:
                if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                    raise ValueError(f"argument {flag} needs a value")
                found[name] = argv[i + 1]
            elif token.startswith(flag + "="):
                found[name] = token[len(flag) + 1 :]
    return found


def parse_optional_args(argv: Sequence[str], today: Optional[dt.date] = None) -> JobOptions:
    """Parse the optional job arguments from ``argv`` (``getResolvedOptions`` only accepts required keys).

    ``--ingest_date``: a ``YYYY-MM-DD`` date (default ``today``, or the current UTC date when ``today`` is None).
    Raises ``ValueError`` on a bad value.
    """
    raw = _raw_optional_args(argv)
    if "ingest_date" in raw:
        ingest_date = etl_transform.parse_ingest_date(raw["ingest_date"])
    else:
        ingest_date = today or dt.datetime.now(dt.timezone.utc).date()
    return JobOptions(ingest_date=ingest_date)


def check_reject_ratio(counts: Mapping[str, int], max_reject_ratio: float) -> float:
    """Return rejected / rows_in (0.0 for no input); raise ``RejectRatioExceededError`` if it exceeds the limit."""
    rows_in = counts["rows_in"]
    ratio = counts["rows_rejected"] / rows_in if rows_in else 0.0
    if ratio > max_reject_ratio:
        raise RejectRatioExceededError(
            f"rejected {counts['rows_rejected']} of {rows_in} rows ({ratio:.2%}), "
            f"more than the dataset's max_reject_ratio {max_reject_ratio:g} ({max_reject_ratio:.2%}); "
            "the rejected rows are in the quarantine, the curated zone was not written"
        )
    return ratio


def build_summary(
    job_name: str, result: etl_transform.TransformResult, max_reject_ratio: float, status: str
) -> dict[str, Any]:
    """The job's one-line JSON log record: counts, ratio, gate, header problem (or null) and the outcome."""
    return {
        "event": "etl_counts",
        "job_name": job_name,
        "dataset": result.dataset,
        "ingest_date": result.ingest_date.isoformat(),
        **{k: int(v) for k, v in result.counts.items()},
        "reject_ratio": round(result.reject_ratio, 6),
        "max_reject_ratio": max_reject_ratio,
        "schema_error": result.schema_error,
        "status": status,
    }


def process(
    spark: Any,
    raw_df: Any,
    *,
    job_name: str,
    dataset: Union[etl_transform.DatasetSpec, Mapping[str, Any]],
    curated_path: str,
    quarantine_path: str,
    options: JobOptions,
    log: Any = print,
) -> dict[str, Any]:
    """Transform ``raw_df``, apply the header and reject-ratio gates, write the outputs and log one JSON line.

    ``dataset``: a ``DatasetSpec`` or a dataset schema document. Returns the summary (see ``build_summary``). When the
    header does not match the schema, or the reject ratio exceeds the spec's ``max_reject_ratio``, writes only the
    quarantine, logs the summary with ``status`` ``"failed_schema"`` or ``"failed_reject_ratio"`` and raises
    ``etl_transform.SchemaError`` or ``RejectRatioExceededError``.
    """
    spec = etl_transform.as_spec(dataset)
    result = etl_transform.transform(spark, raw_df, spec, options.ingest_date)

    def fail(status: str, error: Exception) -> None:
        etl_transform.write_quarantine(result, quarantine_path)
        log(json.dumps(build_summary(job_name, result, spec.max_reject_ratio, status), sort_keys=True))
        raise error

    try:
        if result.schema_error:
            fail("failed_schema", etl_transform.SchemaError(
                f"{result.schema_error}; the {result.counts['rows_rejected']} rows are in the quarantine, "
                "the curated zone was not written"))
        try:
            check_reject_ratio(result.counts, spec.max_reject_ratio)
        except RejectRatioExceededError as err:
            fail("failed_reject_ratio", err)
        etl_transform.write_outputs(result, curated_path, quarantine_path)
        summary = build_summary(job_name, result, spec.max_reject_ratio, "succeeded")
        log(json.dumps(summary, sort_keys=True))
        return summary
    finally:
        result.unpersist()


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Glue entry point: resolve arguments, read the new raw files (bookmarked), process, commit the bookmark."""
    from awsglue.context import GlueContext  # only available on Glue
    from awsglue.job import Job
    from awsglue.utils import getResolvedOptions
    from pyspark.context import SparkContext

    argv = list(sys.argv if argv is None else argv)
    args = getResolvedOptions(argv, REQUIRED_ARGS)
    options = parse_optional_args(argv)
    spec = parse_dataset_schema(args["dataset_schema"])  # fail fast on a bad document, before any read

    glue_context = GlueContext(SparkContext.getOrCreate())
    spark = glue_context.spark_session
    job = Job(glue_context)
    job.init(args["JOB_NAME"], args)

    raw = glue_context.create_dynamic_frame.from_options(
        connection_type="s3",
        format="csv",
        format_options={"withHeader": True, "separator": spec.format.delimiter, "quoteChar": spec.format.quote},
        connection_options={"paths": [args["raw_path"]], "recurse": True},
        transformation_ctx=BOOKMARK_CTX,
    )
    # Glue's CSV reader may infer types per record; make every column a string again (schema-on-read), so that a bad
    # value is reported by etl_transform instead of surfacing as a choice type. An empty bookmark increment gives a
    # frame with no columns, which etl_transform treats as an empty input.
    raw_df = raw.resolveChoice(choice="cast:string").toDF()

    def log(line: str) -> None:
        print(line, flush=True)

    process(
        spark,
        raw_df,
        job_name=args["JOB_NAME"],
        dataset=spec,
        curated_path=args["curated_path"],
        quarantine_path=args["quarantine_path"],
        options=options,
        log=log,
    )
    job.commit()


if __name__ == "__main__":
    main()
