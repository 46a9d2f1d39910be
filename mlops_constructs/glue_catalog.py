"""The Glue Data Catalog table of a curated dataset, declared from its dataset schema document."""

from __future__ import annotations

from typing import Any, Mapping

from aws_cdk import Stack
from aws_cdk import aws_glue as glue
from constructs import Construct

#: Glue Data Catalog (Hive) type of each column type of a dataset schema document.
GLUE_COLUMN_TYPES = {"string": "string", "double": "double", "integer": "int"}
#: Partition column of the curated zone (``ingest_date=YYYY-MM-DD``), a Glue ``date``.
INGEST_DATE = "ingest_date"
# Parquet in the Glue Data Catalog ("Parquet SerDe" in the Athena and Glue documentation).
_PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
_PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
_PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


def table_columns(dataset_schema: Mapping[str, Any]) -> list[glue.CfnTable.ColumnProperty]:
    """The curated table's columns (without the ``ingest_date`` partition): curated names and Glue types, in order.

    Raises ``ValueError`` (one line) on a document without the columns the table needs; the job validates the rest.
    """
    columns = dataset_schema.get("columns") if isinstance(dataset_schema, Mapping) else None
    if not isinstance(columns, (list, tuple)) or not columns:
        raise ValueError("GlueEtl dataset_schema: 'columns' must be a non-empty list")
    result = []
    for i, column in enumerate(columns):
        kind = column.get("type") if isinstance(column, Mapping) else None
        if kind not in GLUE_COLUMN_TYPES:
            raise ValueError(
                f"GlueEtl dataset_schema: columns[{i}].type: {kind!r} is not supported; use string, double or integer"
            )
        result.append(glue.CfnTable.ColumnProperty(name=column["name"], type=GLUE_COLUMN_TYPES[kind]))
    return result


def curated_table(
    scope: Construct,
    id_: str,
    *,
    database_name: str,
    dataset_schema: Mapping[str, Any],
    location: str,
    description: str,
) -> glue.CfnTable:
    """Declare the curated table of a dataset: named after the document's ``name``, its columns in document order
    (Glue types), Parquet files under ``location`` (an ``s3://`` URL ending in ``/``), partitioned by ``ingest_date``
    (``date``), with Athena partition projection on it (``ingest_date=YYYY-MM-DD`` from 2000-01-01 to today), so the
    table is queryable without a crawler registering partitions.
    """
    return glue.CfnTable(
        scope,
        id_,
        catalog_id=Stack.of(scope).account,
        database_name=database_name,
        table_input=glue.CfnTable.TableInputProperty(
            name=dataset_schema["name"],
            description=description,
            table_type="EXTERNAL_TABLE",
            parameters={
                "classification": "parquet",
                "EXTERNAL": "TRUE",
                "projection.enabled": "true",
                f"projection.{INGEST_DATE}.type": "date",
                f"projection.{INGEST_DATE}.format": "yyyy-MM-dd",
                f"projection.{INGEST_DATE}.range": "2000-01-01,NOW",
                f"projection.{INGEST_DATE}.interval": "1",
                f"projection.{INGEST_DATE}.interval.unit": "DAYS",
            },
            partition_keys=[glue.CfnTable.ColumnProperty(name=INGEST_DATE, type="date")],
            storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                columns=table_columns(dataset_schema),
                location=location,
                input_format=_PARQUET_INPUT,
                output_format=_PARQUET_OUTPUT,
                serde_info=glue.CfnTable.SerdeInfoProperty(
                    serialization_library=_PARQUET_SERDE, parameters={"serialization.format": "1"}
                ),
                compressed=False,
                stored_as_sub_directories=False,
            ),
        ),
    )
