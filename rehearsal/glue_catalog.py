"""The Data Catalog side of a dataset's ETL, from ``cdk.out``: the declared table and the optional crawler.

The table (:func:`check_table`, after the job): the data stack declares each curated table from the dataset's schema
document (``AWS::Glue::Table``, created in the stand-in account by ``Cloud.deploy`` with ``CreateTable``). The table
whose ``StorageDescriptor.Location`` is the job's ``--curated_path`` must exist, and the Parquet objects the job wrote
must be what it declares: every column, no other, each of the declared type (Hive's Parquet reader, as Athena and
Glue use it, fails on an int64 column declared ``int`` and reads an undeclared one as missing), under ``k=v/``
directories naming the table's partition keys in order with values of their type.

The crawler (only when a stack has one: a conditional trigger starts it after the job succeeds):

- The trigger must be activated (``StartOnCreation: true``; CloudFormation creates a conditional trigger in state
  CREATED otherwise and it never fires).
- The configuration is checked as ``CreateCrawler`` checks it: ``RecrawlBehavior: CRAWL_NEW_FOLDERS_ONLY`` requires
  ``SchemaChangePolicy`` ``UpdateBehavior: LOG`` and ``DeleteBehavior: LOG`` (Glue developer guide, "Scheduling
  incremental crawls": the option forces both to LOG; omitted, they default to UPDATE_IN_DATABASE /
  DEPRECATE_IN_DATABASE).
- Under the crawler role: an S3 target is listed and read; a catalog target's table is read (``glue:GetTable``, on
  the catalog, the database and the table: "Specifying AWS Glue resource ARNs"), its location listed and read, and the
  partitions it does not have yet are added (``glue:GetPartitions``, ``glue:BatchCreatePartition``, inheriting the
  table's storage descriptor). Then it writes its log stream (named after the crawler) to ``/aws-glue/crawlers``, or,
  when its security configuration encrypts CloudWatch logs, to ``/aws-glue/crawlers-role/<role name>-<security
  configuration name>`` (creating the group when missing), with ``logs:CreateLogStream`` and ``logs:PutLogEvents``:
  a wrong log-group ARN in the role's policy fails as AccessDenied.

Not emulated: classifiers, schema inference, table versions, Lake Formation.
"""

from __future__ import annotations

import datetime
import io
import json
import re
import time
from typing import Any, Optional

from rehearsal.assembly import ACCOUNT, RehearsalError, Stack, resolved_properties
from rehearsal.cloud import DENIALS
from rehearsal.context import Rehearsal, split_s3_uri

#: Arrow type names of Parquet columns -> the Hive/Glue type that reads them.
_GLUE_TYPES = {"string": "string", "large_string": "string", "double": "double", "float": "float",
               "int64": "bigint", "int32": "int", "int16": "smallint", "int8": "tinyint", "bool": "boolean",
               "date32[day]": "date"}


def role_arn(value: str) -> str:
    return value if value.startswith("arn:") else f"arn:aws:iam::{ACCOUNT}:role/{value}"


def security_configuration(rh: Rehearsal, stack: Stack, name: Optional[str]) -> dict:
    """The ``EncryptionConfiguration`` of the stack's security configuration ``name`` ({} for none)."""
    if not name:
        return {}
    for logical in stack.of_type("AWS::Glue::SecurityConfiguration"):
        if rh.assembly.resolver.name(stack, logical) == name:
            return resolved_properties(rh.assembly, stack, logical).get("EncryptionConfiguration") or {}
    raise RehearsalError(f"{stack.name}: no AWS::Glue::SecurityConfiguration named {name!r}")


def _partition_values(relative_key: str, keys: list[tuple[str, str]]) -> Optional[list[str]]:
    """The partition values of an object key relative to the table location; None when the directories are not
    exactly ``<key 1>=v/<key 2>=v/...`` of the table's partition keys."""
    parts = relative_key.split("/")[:-1]
    pairs = [p.partition("=") for p in parts]
    if [name for name, _, _ in pairs] != [name for name, _ in keys] or any(not sep for _, sep, _ in pairs):
        return None
    return [value for _, _, value in pairs]


def _value_problem(value: str, glue_type: str) -> Optional[str]:
    try:
        if glue_type == "date":
            datetime.date.fromisoformat(value)
        elif glue_type in ("int", "bigint", "smallint", "tinyint"):
            int(value)
    except ValueError:
        return f"{value!r} is not a {glue_type}"
    return None


def declared_table(rh: Rehearsal, stack: Stack, location: str) -> tuple[str, str, str]:
    """(logical id, database, table) of the stack's ``AWS::Glue::Table`` whose location is ``location``."""
    for logical in stack.of_type("AWS::Glue::Table"):
        props = resolved_properties(rh.assembly, stack, logical)
        table_location = ((props.get("TableInput") or {}).get("StorageDescriptor") or {}).get("Location", "")
        if table_location.rstrip("/") == location.rstrip("/"):
            return logical, props["DatabaseName"], props["TableInput"]["Name"]
    raise RehearsalError(f"{stack.name}: no AWS::Glue::Table has the location {location}: what is written there is "
                         "not in the Data Catalog")


def check_table(rh: Rehearsal, job: Any, curated_keys: list[str]) -> dict:
    """The declared table of the job's ``--curated_path`` describes the Parquet objects the job wrote."""
    curated = job.arguments.get("--curated_path") or ""
    logical, database, name = declared_table(rh, job.stack, curated)
    table = rh.cloud.admin("glue").get_table(DatabaseName=database, Name=name)["Table"]  # as deployed
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    keys = [(k["Name"], k["Type"]) for k in table.get("PartitionKeys") or []]
    bucket, prefix = split_s3_uri(curated)
    s3 = rh.cloud.admin("s3")
    problems: list[str] = []
    parquet = [k for k in curated_keys if k.endswith(".parquet")]
    for key in parquet:
        import pyarrow.parquet as pq

        schema = pq.read_schema(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        data = {f.name: _GLUE_TYPES.get(str(f.type), str(f.type)) for f in schema}
        missing = sorted(set(columns) - set(data))
        extra = sorted(set(data) - set(columns))
        types = [f"{c} declared {columns[c]}, written {data[c]}" for c in columns if c in data and data[c] != columns[c]]
        values = _partition_values(key[len(prefix):], keys)
        problems += [f"{key}: {p}" for p in (
            *([f"declared column(s) not written: {', '.join(missing)}"] if missing else []),
            *([f"written column(s) not declared: {', '.join(extra)}"] if extra else []),
            *types,
            *([f"not under the partition directories {'/'.join(k + '=...' for k, _ in keys)}"] if values is None
              else [v for v in (_value_problem(val, t) for val, (_, t) in zip(values, keys)) if v]),
        )]
        if problems:
            break
    if problems:
        raise RehearsalError(f"{job.stack.name}/{logical}: the declared table {database}.{name} does not describe what "
                             f"Glue job {job.name} writes: " + "; ".join(problems))
    return {"table": f"{database}.{name}", "columns": len(columns), "partition_keys": [k for k, _ in keys],
            "objects_checked": len(parquet)}


# --- the crawler ------------------------------------------------------------------------------------------------------
def validate_crawler(where: str, props: dict) -> None:
    """What ``CreateCrawler`` rejects (and so the stack's deployment): see the module docstring."""
    recrawl = (props.get("RecrawlPolicy") or {}).get("RecrawlBehavior", "CRAWL_EVERYTHING")
    policy = props.get("SchemaChangePolicy") or {}
    update = policy.get("UpdateBehavior", "UPDATE_IN_DATABASE")
    delete = policy.get("DeleteBehavior", "DEPRECATE_IN_DATABASE")
    if recrawl == "CRAWL_NEW_FOLDERS_ONLY" and (update, delete) != ("LOG", "LOG"):
        raise RehearsalError(
            f"{where}: RecrawlBehavior CRAWL_NEW_FOLDERS_ONLY with SchemaChangePolicy UpdateBehavior {update} / "
            f"DeleteBehavior {delete}: Glue requires LOG for both (CreateCrawler fails, so does the deployment)"
        )
    if recrawl == "CRAWL_EVENT_MODE":
        targets = (props.get("Targets") or {}).get("S3Targets") or []
        if not any(t.get("EventQueueArn") for t in targets):
            raise RehearsalError(f"{where}: RecrawlBehavior CRAWL_EVENT_MODE needs an S3 target with EventQueueArn")


def _crawlers_after(rh: Rehearsal, stack: Stack, job_name: str) -> list[tuple[str, str, dict]]:
    """(trigger logical id, crawler name, trigger props) of conditional triggers that start a crawler on success."""
    found = []
    for logical in stack.of_type("AWS::Glue::Trigger"):
        props = resolved_properties(rh.assembly, stack, logical)
        if props.get("Type") != "CONDITIONAL":
            continue
        conditions = (props.get("Predicate") or {}).get("Conditions") or []
        if not any(c.get("JobName") == job_name and c.get("State") == "SUCCEEDED" for c in conditions):
            continue
        for action in props.get("Actions") or []:
            if action.get("CrawlerName"):
                found.append((logical, action["CrawlerName"], props))
    return found


def _logs_resources(rh: Rehearsal, role_name: str) -> list[str]:
    iam = rh.cloud.admin("iam")
    out: list[str] = []
    for policy_name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
        doc = json.loads(doc) if isinstance(doc, str) else doc
        statements = doc.get("Statement", [])
        for s in statements if isinstance(statements, list) else [statements]:
            actions = s.get("Action", [])
            actions = actions if isinstance(actions, list) else [actions]
            if any(a.lower().startswith("logs:") or a == "*" for a in actions):
                res = s.get("Resource", [])
                out.extend(res if isinstance(res, list) else [res])
    return out


def check_crawlers(rh: Rehearsal, job: Any) -> list[tuple[str, str, str, dict]]:
    """The crawlers the job's success starts: (trigger, crawler name, crawler logical id, resolved properties), each
    trigger activated and each configuration one Glue accepts."""
    stack = job.stack
    crawlers = {rh.assembly.resolver.name(stack, lg): lg for lg in stack.of_type("AWS::Glue::Crawler")}
    found = []
    for trigger_logical, crawler_name, trigger in _crawlers_after(rh, stack, job.name):
        if trigger.get("StartOnCreation") is not True:
            raise RehearsalError(
                f"{stack.name}/{trigger_logical}: the CONDITIONAL trigger has no StartOnCreation: true, so it is "
                f"created deactivated and the crawler {crawler_name} never runs after {job.name}"
            )
        logical = crawlers.get(crawler_name)
        if logical is None:
            raise RehearsalError(f"{stack.name}/{trigger_logical}: starts crawler {crawler_name!r}, not in the stack")
        props = resolved_properties(rh.assembly, stack, logical)
        validate_crawler(f"{stack.name}/{logical}", props)
        found.append((trigger_logical, crawler_name, logical, props))
    return found


def _read_objects(s3: Any, location: str) -> list[str]:
    """List and read what a crawler samples under ``location`` (the first 64 KB of each object); the keys."""
    bucket, prefix = split_s3_uri(location)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            head = {"Range": "bytes=0-65535"} if obj.get("Size", 0) > 65536 else {}  # classifiers sample
            s3.get_object(Bucket=bucket, Key=obj["Key"], **head)["Body"].read()
            keys.append(obj["Key"])
    return keys


def _crawl_table(glue: Any, s3: Any, database: str, name: str) -> tuple[int, int]:
    """A catalog target's table: read it and its location, add the partitions it lacks. (objects read, added)."""
    table = glue.get_table(DatabaseName=database, Name=name)["Table"]
    descriptor = table["StorageDescriptor"]
    location = descriptor["Location"].rstrip("/") + "/"
    partition_keys = [(k["Name"], k["Type"]) for k in table.get("PartitionKeys") or []]
    keys = _read_objects(s3, location)
    prefix = split_s3_uri(location)[1]
    found = {tuple(v) for k in keys if (v := _partition_values(k[len(prefix):], partition_keys)) and partition_keys}
    existing = {tuple(p["Values"]) for page in glue.get_paginator("get_partitions").paginate(
        DatabaseName=database, TableName=name) for p in page["Partitions"]}
    new = sorted(found - existing)
    if new:
        inputs = [{"Values": list(values), "StorageDescriptor": {**descriptor, "Location": location + "/".join(
            f"{k}={v}" for (k, _), v in zip(partition_keys, values)) + "/"}} for values in new]
        errors = glue.batch_create_partition(DatabaseName=database, TableName=name, PartitionInputList=inputs)
        if errors.get("Errors"):
            raise RehearsalError(f"BatchCreatePartition on {database}.{name}: {errors['Errors'][0]}")
    return len(keys), len(new)


def _crawl(rh: Rehearsal, where: str, props: dict, crawler_role: str) -> tuple[int, int]:
    """What the crawler reads and writes in S3 and the catalog under its role: (objects read, partitions added)."""
    first_denial = len(DENIALS)
    s3, glue = rh.cloud.client("s3", crawler_role), rh.cloud.client("glue", crawler_role)
    targets = props.get("Targets") or {}
    read = added = 0
    try:
        for target in targets.get("S3Targets") or []:
            read += len(_read_objects(s3, target["Path"]))
        for target in targets.get("CatalogTargets") or []:
            for table in target.get("Tables") or []:
                objects, partitions = _crawl_table(glue, s3, target["DatabaseName"], table)
                read, added = read + objects, added + partitions
    except Exception as exc:  # noqa: BLE001 (botocore's ClientError, AccessDenied included)
        raise RehearsalError(
            f"{where}: the crawler cannot crawl its targets under its role: {exc}; "
            + "; ".join(str(d) for d in DENIALS[first_denial:])
        ) from None
    return read, added


def _write_logs(rh: Rehearsal, stack: Stack, logical: str, props: dict, crawler_name: str, read: int) -> str:
    """The crawler's log stream, in the group Glue picks for its security configuration; returns the group."""
    where, crawler_role = f"{stack.name}/{logical}", role_arn(props["Role"])
    role_name = crawler_role.rsplit("/", 1)[-1]
    encryption = security_configuration(rh, stack, props.get("CrawlerSecurityConfiguration"))
    cw_mode = (encryption.get("CloudWatchEncryption") or {}).get("CloudWatchEncryptionMode", "DISABLED")
    if cw_mode == "SSE-KMS":
        group = f"/aws-glue/crawlers-role/{role_name}-{props['CrawlerSecurityConfiguration']}"
    else:
        group = "/aws-glue/crawlers"
    first_denial = len(DENIALS)
    logs = rh.cloud.client("logs", crawler_role)
    try:
        existing = rh.cloud.admin("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"]
        if not any(g["logGroupName"] == group for g in existing):
            logs.create_log_group(logGroupName=group)
        try:
            logs.create_log_stream(logGroupName=group, logStreamName=crawler_name)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        now = int(time.time() * 1000)
        logs.put_log_events(logGroupName=group, logStreamName=crawler_name, logEvents=[
            {"timestamp": now, "message": f"[rehearsal] BENCHMARK : Running Start Crawl for Crawler {crawler_name}"},
            {"timestamp": now + 1, "message": f"[rehearsal] BENCHMARK : Crawler read {read} objects"},
        ])
    except Exception as exc:  # noqa: BLE001
        denials = DENIALS[first_denial:]
        nameless = [r for r in _logs_resources(rh, role_name) if re.search(r":log-group:?$", r)]
        detail = (
            f"crawler logs IAM resource `{nameless[0]}` with no name (a log-group ARN must name the group, "
            f"here {group})" if nameless else f"the crawler role may not write to {group}"
        )
        raise RehearsalError(
            f"{where}: {detail}: {exc}" + ("; " + "; ".join(str(d) for d in denials) if denials else "")
        ) from None
    return group


def rehearse_crawler(rh: Rehearsal, job: Any) -> dict:
    """Run what each crawler started after the job does with its role (see the module docstring); {} for none."""
    crawlers = check_crawlers(rh, job)
    if not crawlers:
        rh.log(f"glue: no crawler runs after {job.name} (the table is declared from the schema)")
        return {}
    results = {}
    for trigger_logical, crawler_name, logical, props in crawlers:
        read, added = _crawl(rh, f"{job.stack.name}/{logical}", props, role_arn(props["Role"]))
        group = _write_logs(rh, job.stack, logical, props, crawler_name, read)
        results[crawler_name] = {"objects_read": read, "partitions_added": added, "log_group": group,
                                 "trigger": trigger_logical}
    return results
