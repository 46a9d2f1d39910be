"""``GlueContext`` of the stand-in: the Spark session, S3 CSV reads through DynamicFrames, ``s3://`` writes."""

from __future__ import annotations

import functools

from awsglue import _s3
from awsglue.dynamicframe import DynamicFrame

_WRITE_METHODS = ("save", "parquet", "json", "csv", "orc", "text")


def _install_s3_writer() -> None:
    """Route ``DataFrameWriter`` writes to ``s3://`` through a local directory uploaded with boto3 (see the package)."""
    from pyspark.sql.readwriter import DataFrameWriter

    if getattr(DataFrameWriter, "_rehearsal_s3", False):
        return
    original_mode = DataFrameWriter.mode

    @functools.wraps(original_mode)
    def mode(self, saveMode):  # noqa: N803 (pyspark's name)
        if saveMode is not None:
            self._rehearsal_mode = saveMode.lower()
        return original_mode(self, saveMode)

    DataFrameWriter.mode = mode

    def wrap(name):
        original = getattr(DataFrameWriter, name)

        @functools.wraps(original)
        def method(self, *args, **kwargs):
            args = list(args)
            path = kwargs.get("path", args[0] if args else None)
            if not _s3.is_s3(path):
                return original(self, *args, **kwargs)
            local = _s3.scratch("write")
            target = str(local / "out")
            if "path" in kwargs:
                kwargs["path"] = target
            else:
                args[0] = target
            result = original(self, *args, **kwargs)
            save_mode = getattr(self, "_rehearsal_mode", "errorifexists")
            exists = _s3.prefix_has_objects(path)
            if exists and save_mode in ("error", "errorifexists", "default"):
                from pyspark.errors import AnalysisException

                raise AnalysisException(f"[PATH_ALREADY_EXISTS] Path {path} already exists. Set mode as \"overwrite\"")
            if exists and save_mode == "ignore":
                return result
            if exists and save_mode == "overwrite":
                _s3.delete_prefix(path)
            _s3.upload_tree(local / "out", path)
            return result

        setattr(DataFrameWriter, name, method)

    for name in _WRITE_METHODS:
        wrap(name)
    DataFrameWriter._rehearsal_s3 = True


class _DynamicFrameReader:
    def __init__(self, glue_context):
        self._glue_context = glue_context

    def from_options(self, connection_type, connection_options=None, format=None, format_options=None,  # noqa: A002
                     transformation_ctx="", push_down_predicate="", **kwargs):
        if connection_type != "s3":
            raise NotImplementedError(f"the Glue stand-in reads only connection_type='s3', not {connection_type!r}")
        if format != "csv":
            raise NotImplementedError(f"the Glue stand-in reads only format='csv', not {format!r}")
        connection_options = dict(connection_options or {})
        format_options = dict(format_options or {})
        paths = connection_options.get("paths") or []
        if isinstance(paths, str):
            paths = [paths]
        if not paths:
            raise ValueError("connection_options['paths'] is required")
        recurse = bool(connection_options.get("recurse", False))
        objects = [obj for p in paths for obj in _s3.list_objects(p, recurse)]
        job = self._glue_context._job
        if job is not None and transformation_ctx:
            objects = job._bookmark_filter(transformation_ctx, objects)
        spark = self._glue_context.spark_session
        if not objects:
            from pyspark.sql.types import StructType

            return DynamicFrame(spark.createDataFrame([], StructType([])), self._glue_context, transformation_ctx)
        files = _s3.download(objects, _s3.scratch("read"))
        header = str(format_options.get("withHeader", False)).lower() == "true"
        options = {
            "header": str(header).lower(),
            "inferSchema": "false",
            "sep": format_options.get("separator", ","),
            "quote": format_options.get("quoteChar", '"'),
            "multiLine": str(format_options.get("multiLine", False)).lower(),
        }
        if format_options.get("escaper"):
            options["escape"] = format_options["escaper"]
        df = spark.read.options(**options).csv(files)
        return DynamicFrame(df, self._glue_context, transformation_ctx)


class GlueContext:
    def __init__(self, sparkContext, **options):  # noqa: N803 (Glue's name)
        from pyspark.sql import SparkSession

        self._sc = sparkContext
        self.spark_session = SparkSession(sparkContext)
        self._job = None
        self.create_dynamic_frame = _DynamicFrameReader(self)
        _install_s3_writer()

    def getSparkSession(self):  # noqa: N802
        return self.spark_session

    def get_logger(self):
        return self._sc._jvm.org.apache.log4j.LogManager.getLogger("GlueLogger")
