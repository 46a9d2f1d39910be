"""Rehearsal stand-in for AWS Glue's ``awsglue`` package (Glue 5.0 API surface used by the platform's ETL job only).

What it emulates (checked against the Glue developer guide: "Job parameters", "Tracking processed data using job
bookmarks", "CSV format options", "AWS Glue Scala/Python GlueContext APIs"):

- ``awsglue.utils.getResolvedOptions(argv, names)``: every name is a required ``--name value`` argument; unknown
  arguments are ignored; ``--job-bookmark-option`` is resolved too (``job_bookmark_option``); as in Glue it is an
  error to ask for ``job-bookmark-option`` / ``continuation-option`` by name.
- ``awsglue.context.GlueContext(sc)``: ``spark_session`` and ``create_dynamic_frame.from_options`` for
  ``connection_type="s3"``, ``format="csv"`` (``withHeader``, ``separator``, ``quoteChar``, ``escaper``), the
  ``paths`` and ``recurse`` connection options and a ``transformation_ctx`` (bookmark key).
- ``awsglue.dynamicframe.DynamicFrame``: ``toDF``, ``fromDF``, ``count``, ``resolveChoice`` (a no-op: see below).
- ``awsglue.job.Job``: ``init`` / ``commit`` with job bookmarks (``job-bookmark-enable``: only objects not handed over
  by a committed run are read, and ``commit`` records what this run read; ``-pause``: filter, never record;
  ``-disable``: read everything). The state lives in ``$REHEARSAL_GLUE_STATE_DIR/bookmarks/<job>.json`` (Glue keeps
  it in the service). An object counts as new when its key or ETag is new (Glue compares last-modified times).

S3 (the stand-in for Glue's S3 filesystem; local Spark has none): reads list and download the objects with boto3
under the process's credentials (the job role, the runner sets them) into a temporary directory; ``s3://`` writes of
``DataFrameWriter`` (``save``/``parquet``/``json``/``csv``/``orc``/``text``) go to a local temporary directory that
is then uploaded under the prefix with boto3 under the same credentials, applying the save mode (``append``; ``overwrite``
deletes the prefix's objects first; ``error``/``errorifexists`` fails and ``ignore`` skips when the prefix has objects),
with SSE-KMS when the runner passes the security configuration's key (``REHEARSAL_GLUE_S3_KMS_KEY``). Local ``.crc``
checksum files are not uploaded (S3 has none).

Not emulated: Glue's per-record type inference and choice types (the CSV is read with every column a string, so
``resolveChoice`` has nothing to resolve), other formats and connection types, ``spark.read`` of ``s3://`` paths,
bookmark encryption, continuous logging, metrics, executors on other hosts.
"""
