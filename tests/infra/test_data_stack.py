"""Security and behaviour of the data stack: lake buckets, key, Glue ETL."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from aws_cdk.assertions import Match

from mlops_constructs.glue_etl import PY_MODULES_ZIP, package_python_modules
from platform_config import load_config
from stacks.model_stack import etl_job_name

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "datasets"
# The datasets of config/dev.yaml, each a test case (read at collection: every xdist worker collects the same list).
DEV_DATASETS = [d.name for d in load_config("dev").datasets]


def _etl_ids(synth, dataset: str) -> set[str]:
    """Logical IDs of the resources of ``dataset``'s ETL construct in the data stack."""
    from aws_cdk import CfnElement

    stack = synth.stacks["data"]
    return {stack.resolve(stack.get_logical_id(e)) for e in stack.etls[dataset].node.find_all()
            if isinstance(e, CfnElement)}


def _etl_resources(synth, dataset: str, cfn_type: str) -> dict[str, dict]:
    ids = _etl_ids(synth, dataset)
    return {k: v for k, v in synth.resources("data", cfn_type).items() if k in ids}


def _job(synth, dataset: str) -> dict:
    """The Glue job of ``dataset`` (the one job of its ETL, named ``<prefix>-etl-<dataset>``)."""
    ((_, job),) = _etl_resources(synth, dataset, "AWS::Glue::Job").items()
    assert job["Properties"]["Name"] == synth.config.names.etl_job(dataset)
    return job


def test_each_dev_dataset_has_its_own_etl_and_nothing_glue_is_outside_them(dev):
    assert set(dev.stacks["data"].etls) == set(DEV_DATASETS) and len(DEV_DATASETS) >= 2
    id_sets = [_etl_ids(dev, d) for d in DEV_DATASETS]
    assert all(not (a & b) for i, a in enumerate(id_sets) for b in id_sets[i + 1:])  # disjoint
    owned = set().union(*id_sets)
    for cfn_type in ("AWS::Glue::Job", "AWS::Glue::Table", "AWS::Glue::SecurityConfiguration",
                     "AWS::Glue::Workflow", "AWS::Glue::Trigger", "AWS::Logs::LogGroup"):
        assert set(dev.resources("data", cfn_type)) <= owned, cfn_type
    jobs = {j["Properties"]["Name"] for j in dev.resources("data", "AWS::Glue::Job").values()}
    assert jobs == {dev.config.names.etl_job(d) for d in DEV_DATASETS}
    # Every model's build pipeline waits for the job of its own dataset.
    for model in dev.config.models:
        assert etl_job_name(dev.config, model) == dev.config.names.etl_job(dev.config.dataset_of(model).name)
        assert etl_job_name(dev.config, model) in jobs, model.name


def test_four_buckets_all_versioned_retained_and_private(synthesized):
    buckets = synthesized.resources("data", "AWS::S3::Bucket")
    assert len(buckets) == 4  # raw, curated, artifacts, access logs
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, logical_id
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical_id
        assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain", logical_id
        assert props["LifecycleConfiguration"]["Rules"], logical_id


def test_zone_buckets_use_the_customer_managed_key_and_log_access(dev):
    buckets = dev.resources("data", "AWS::S3::Bucket")
    (key_id,) = dev.resources("data", "AWS::KMS::Key")
    zones = {k: v for k, v in buckets.items() if "AccessLogs" not in k}
    assert len(zones) == 3
    for logical_id, bucket in zones.items():
        props = bucket["Properties"]
        sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms", logical_id
        assert sse["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": [key_id, "Arn"]}
        assert sse["BucketKeyEnabled"] is True
        assert "DestinationBucketName" in props["LoggingConfiguration"], logical_id
        rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
        assert rules["noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90
        assert rules["noncurrent-versions"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7


def test_only_raw_zone_sends_events_natively(dev):
    buckets = dev.resources("data", "AWS::S3::Bucket")
    with_events = [k for k, v in buckets.items() if "NotificationConfiguration" in v["Properties"]]
    assert len(with_events) == 1 and "Raw" in with_events[0]
    assert not dev.resources("data", "Custom::S3BucketNotifications")


def test_every_bucket_policy_denies_plain_http(synthesized):
    policies = synthesized.resources("data", "AWS::S3::BucketPolicy")
    assert len(policies) == 4
    for logical_id, policy in policies.items():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        ), logical_id


def test_key_rotates_and_is_retained(synthesized):
    (key,) = synthesized.resources("data", "AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"


@pytest.mark.parametrize("dataset", DEV_DATASETS)
def test_glue_job_runs_glue_5_with_security_configuration_and_bookmarks(dev, dataset):
    from aws_cdk.assertions import Template

    ((sec_id, sec),) = _etl_resources(dev, dataset, "AWS::Glue::SecurityConfiguration").items()
    ((job_id, job),) = _etl_resources(dev, dataset, "AWS::Glue::Job").items()
    Template.from_json({"Resources": {job_id: job}}).has_resource_properties(
        "AWS::Glue::Job",
        {
            "GlueVersion": "5.0",
            "Name": dev.config.names.etl_job(dataset),  # the name the model stacks' EventBridge rules match
            "Command": {"Name": "glueetl", "PythonVersion": "3"},
            "SecurityConfiguration": {"Ref": sec_id},  # its own ETL's
            "WorkerType": "G.1X",
            "NumberOfWorkers": 2,
            "DefaultArguments": Match.object_like(
                {
                    "--job-bookmark-option": "job-bookmark-enable",
                    # The whole schema document, compact JSON with sorted keys: the job's only dataset argument.
                    "--dataset_schema": json.dumps(
                        dev.config.dataset(dataset).schema_document(), sort_keys=True, separators=(",", ":")
                    ),
                    "--extra-py-files": Match.any_value(),
                }
            ),
        },
    )
    enc = sec["Properties"]["EncryptionConfiguration"]
    assert enc["S3Encryptions"][0]["S3EncryptionMode"] == "SSE-KMS"
    assert enc["CloudWatchEncryption"]["CloudWatchEncryptionMode"] == "SSE-KMS"
    assert enc["JobBookmarksEncryption"]["JobBookmarksEncryptionMode"] == "CSE-KMS"


@pytest.mark.parametrize("dataset", DEV_DATASETS)
def test_glue_5_job_has_no_continuous_logging_arguments(dev, dataset):
    # Glue 5.0 logs in real time by itself; the continuous-logging arguments are documented for 4.0 and earlier.
    job = _job(dev, dataset)
    assert job["Properties"]["GlueVersion"] == "5.0"
    args = job["Properties"]["DefaultArguments"]
    assert not [a for a in args if a.startswith(("--enable-continuous", "--continuous-log"))], sorted(args)


def test_prod_job_scales_from_config(prod):
    prod.assertions("data").has_resource_properties("AWS::Glue::Job", {"NumberOfWorkers": 4})


def test_catalog_table_declared_from_the_schema_and_workflow_without_crawler(dev):
    template = dev.assertions("data")
    template.has_resource_properties("AWS::Glue::Database", {"DatabaseInput": {"Name": "mlops_dev"}})
    assert not dev.resources("data", "AWS::Glue::Crawler")  # the table is declared: the crawler is opt-in
    triggers = {t["Properties"]["Type"]: t["Properties"] for t in dev.resources("data", "AWS::Glue::Trigger").values()}
    assert set(triggers) == {"EVENT"}
    rules = dev.resources("data", "AWS::Events::Rule")
    patterns = [r["Properties"].get("EventPattern") for r in rules.values()]
    schedules = [r["Properties"].get("ScheduleExpression") for r in rules.values()]
    assert any(p and p["detail-type"] == ["Object Created"] for p in patterns)
    assert dev.config.datasets[0].triggers.schedule in schedules


def test_each_dev_dataset_is_triggered_as_its_config_says(dev):
    rules = dev.resources("data", "AWS::Events::Rule")
    for dataset in dev.config.datasets:
        own = [r["Properties"] for k, r in rules.items() if k in _etl_ids(dev, dataset.name)]
        uploads = [r["EventPattern"]["detail"]["object"]["key"] for r in own if "EventPattern" in r]
        schedules = [r["ScheduleExpression"] for r in own if "ScheduleExpression" in r]
        assert uploads == ([[{"prefix": f"{dataset.name}/"}]] if dataset.triggers.raw_upload else []), dataset.name
        assert schedules == ([dataset.triggers.schedule] if dataset.triggers.schedule else []), dataset.name


def _table_columns(document: dict) -> list[dict]:
    glue_types = {"string": "string", "double": "double", "integer": "int"}
    return [{"Name": c["name"], "Type": glue_types[c["type"]]} for c in document["columns"]]


@pytest.mark.parametrize("dataset", DEV_DATASETS)
def test_curated_table_columns_match_the_document(dev, dataset):
    document = dev.config.dataset(dataset).schema_document()
    (table,) = _etl_resources(dev, dataset, "AWS::Glue::Table").values()
    table_input = table["Properties"]["TableInput"]
    assert table_input["Name"] == document["name"] and table_input["TableType"] == "EXTERNAL_TABLE"
    descriptor = table_input["StorageDescriptor"]
    assert descriptor["Columns"] == _table_columns(document)
    assert table_input["PartitionKeys"] == [{"Name": "ingest_date", "Type": "date"}]
    assert descriptor["InputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    assert descriptor["OutputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    serde = descriptor["SerdeInfo"]["SerializationLibrary"]
    assert serde == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    assert json.dumps(descriptor["Location"]).endswith(f'/{dataset}/"]]}}')
    (database,) = dev.resources("data", "AWS::Glue::Database")  # one catalog database for every dataset's table
    assert table["Properties"]["DatabaseName"] == {"Ref": database}
    params = table_input["Parameters"]
    assert params["classification"] == "parquet" and params["projection.enabled"] == "true"
    assert params["projection.ingest_date.format"] == "yyyy-MM-dd"


def test_workflow_triggers_are_active_and_valid(synthesized):
    for logical_id, trigger in synthesized.all_resources("AWS::Glue::Trigger").items():
        props = trigger["Properties"]
        if props["Type"] in ("SCHEDULED", "CONDITIONAL"):
            # Otherwise CloudFormation creates the trigger deactivated: the crawler would never run.
            assert props.get("StartOnCreation") is True, logical_id
        if props["Type"] == "ON_DEMAND":
            assert not props.get("StartOnCreation"), logical_id  # true is not supported for ON_DEMAND
        if props["Type"] != "EVENT":
            assert "EventBatchingCondition" not in props, logical_id


@pytest.mark.parametrize("dataset", DEV_DATASETS)
def test_glue_log_groups_have_retention_and_encryption(dev, dataset):
    groups = _etl_resources(dev, dataset, "AWS::Logs::LogGroup")
    assert len(groups) == 2  # the job's output and error (no crawler by default)
    for logical_id, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == 30, logical_id
        assert "KmsKeyId" in group["Properties"], logical_id


@pytest.mark.parametrize("dataset", DEV_DATASETS)
def test_job_role_is_scoped_to_dataset_prefixes(dev, dataset):
    policies = [p for k, p in _etl_resources(dev, dataset, "AWS::IAM::Policy").items() if "JobRole" in k]
    (policy,) = policies
    resources = []
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        res = statement["Resource"]
        resources.extend(res if isinstance(res, list) else [res])
    rendered = [str(r) for r in resources]
    assert not any(r.endswith("Arn']}/*']]}") for r in rendered)
    assert any(f"/{dataset}/*" in r for r in rendered)
    assert any(f"/quarantine/{dataset}/*" in r for r in rendered)
    for other in set(DEV_DATASETS) - {dataset}:  # no access to another dataset's objects
        assert not any(f"/{other}/" in r for r in rendered), other


# --- physical names: nothing retained can block the next deployment -------------------------------------------------
def _refs(value) -> set[str]:
    """Logical IDs referenced (Ref / GetAtt) anywhere in ``value``."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value:
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            found.add(value["Fn::GetAtt"][0])
        for v in value.values():
            found |= _refs(v)
    elif isinstance(value, list):
        for v in value:
            found |= _refs(v)
    return found


@pytest.mark.parametrize("dataset", DEV_DATASETS)
def test_retained_log_groups_are_named_after_generated_role_names(dev, dataset):
    template = dev.template("data")["Resources"]
    groups = _etl_resources(dev, dataset, "AWS::Logs::LogGroup")
    for logical_id, group in groups.items():
        assert group["DeletionPolicy"] == "Retain", logical_id
        name = group["Properties"]["LogGroupName"]
        # A fixed string would make a redeploy after a delete fail on the retained group: the name must contain a
        # role name CloudFormation generates (IAM roles of the stack carry no RoleName).
        roles = [r for r in _refs(name) if template[r]["Type"] == "AWS::IAM::Role"]
        assert roles, (logical_id, name)
        assert all("RoleName" not in template[r]["Properties"] for r in roles)
        assert set(roles) <= _etl_ids(dev, dataset), roles  # its own job's role
    rendered = sorted(json.dumps(g["Properties"]["LogGroupName"]) for g in groups.values())
    assert sum("/aws-glue/jobs/" in r for r in rendered) == 2  # output and error of the encrypted job logs
    assert sum("/aws-glue/crawlers-role/" in r for r in rendered) == 0


def test_no_fixed_name_for_security_configuration_or_triggers(dev):
    configurations = dev.resources("data", "AWS::Glue::SecurityConfiguration").values()
    names = [sec["Properties"]["Name"] for sec in configurations]
    assert len(names) == len(DEV_DATASETS) == len(set(names))  # one per dataset's ETL, each its own name
    for name in names:
        assert name != f"{dev.config.prefix()}-etl"  # generated from the construct path
        assert not name.startswith(f"{dev.config.prefix()}-etl-")
    assert all("Name" not in t["Properties"] for t in dev.resources("data", "AWS::Glue::Trigger").values())
    # Catalog metadata is deleted with the stack (the table is declared again), so its fixed name never blocks a
    # redeploy.
    (database,) = dev.resources("data", "AWS::Glue::Database").values()
    assert database.get("DeletionPolicy", "Delete") == "Delete"


def _statements(dev, role_fragment: str) -> list[dict]:
    policies = [p for k, p in dev.resources("data", "AWS::IAM::Policy").items() if role_fragment in k]
    assert policies, role_fragment
    return [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _resources(statement: dict) -> list:
    res = statement["Resource"]
    return res if isinstance(res, list) else [res]


@pytest.mark.parametrize("dataset", DEV_DATASETS)
def test_job_may_write_and_encrypt_its_log_groups(dev, dataset):
    statements = [s for k, p in _etl_resources(dev, dataset, "AWS::IAM::Policy").items() if "JobRole" in k
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    (logs_statement,) = [s for s in statements if s.get("Sid") == "JobLogs"]
    assert {"logs:AssociateKmsKey", "logs:CreateLogStream", "logs:PutLogEvents"} <= set(logs_statement["Action"])
    rendered = [json.dumps(r) for r in _resources(logs_statement)]
    assert len(rendered) == 4  # output and error: group and streams
    assert not any("Fn::GetAtt" in r for r in rendered)  # GetAtt Arn ends in ":*" and misses the group itself
    # Its own job's two log groups, not another dataset's.
    referenced = set().union(*(_refs(r) for r in _resources(logs_statement))) - {
        "AWS::Partition", "AWS::Region", "AWS::AccountId"}
    assert referenced == set(_etl_resources(dev, dataset, "AWS::Logs::LogGroup")), rendered


# --- the ETL code as Glue stages it -------------------------------------------------------------------------------
def _job_asset_paths(synth, dataset: str) -> tuple[Path, Path]:
    """Local files of the job's script and --extra-py-files assets, found through the stack's asset manifest."""
    job = _job(synth, dataset)
    script_key = json.dumps(job["Properties"]["Command"]["ScriptLocation"]).split("/")[-1].split('"')[0]
    extra_key = json.dumps(job["Properties"]["DefaultArguments"]["--extra-py-files"]).split("/")[-1].split('"')[0]
    stack = synth.stacks["data"]
    manifest = json.loads((synth.outdir / f"{stack.artifact_id}.assets.json").read_text())
    by_key = {}
    for asset in manifest["files"].values():
        (dest,) = asset["destinations"].values()
        path = Path(asset["source"]["path"])
        by_key[dest["objectKey"]] = path if path.is_absolute() else synth.outdir / path
    return by_key[script_key], by_key[extra_key]


@pytest.mark.parametrize("dataset", DEV_DATASETS)
def test_extra_py_files_is_a_zip_of_the_job_modules(dev, dataset):
    script, modules = _job_asset_paths(dev, dataset)
    assert script.read_bytes() == (REPO / "glue_jobs" / "etl_job.py").read_bytes()
    assert modules.suffix == ".zip"
    with zipfile.ZipFile(modules) as archive:
        assert archive.namelist() == ["dataset_spec.py", "etl_transform.py"]
        for name in archive.namelist():
            assert archive.read(name) == (REPO / "glue_jobs" / name).read_bytes()


def test_extra_py_files_asset_hash_depends_on_content_only(dev, prod):
    # Two syntheses write the zip to different temporary directories: same code, same S3 object.
    # Every dataset's job runs the same code: one script and one zip object for all of them.
    keys = []
    for synth in (dev, prod):
        jobs = synth.resources("data", "AWS::Glue::Job").values()
        assert len(jobs) == len(synth.config.datasets)
        for job in jobs:
            keys.append(json.dumps(job["Properties"]["DefaultArguments"]["--extra-py-files"]).split("/")[-1])
    assert len(keys) == len(DEV_DATASETS) + len(prod.config.datasets)
    assert len(set(keys)) == 1 and ".zip" in keys[0]


@pytest.mark.parametrize("dataset", DEV_DATASETS)
def test_etl_job_imports_etl_transform_as_glue_stages_it(dev, tmp_path, dataset):
    # Glue runs the script asset by its <hash>.py name with each --extra-py-files object on sys.path.
    script, modules = _job_asset_paths(dev, dataset)
    staged_script = tmp_path / "0123abcd.py"
    staged_script.write_bytes(script.read_bytes())
    staged_zip = tmp_path / "4567cdef.zip"
    staged_zip.write_bytes(modules.read_bytes())
    code = (
        "import importlib.util, sys; sys.path.insert(0, sys.argv[2]); "
        "spec = importlib.util.spec_from_file_location('glue_script', sys.argv[1]); "
        "m = importlib.util.module_from_spec(spec); sys.modules['glue_script'] = m; spec.loader.exec_module(m); "
        "assert m.etl_transform.__file__.startswith(sys.argv[2]), m.etl_transform.__file__; "
        "print(m.REQUIRED_ARGS[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(staged_script), str(staged_zip)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "JOB_NAME"


def test_package_python_modules_is_byte_reproducible(tmp_path):
    module = tmp_path / "src" / "mod_a.py"
    module.parent.mkdir()
    module.write_text("X = 1\n")
    first = package_python_modules([module], tmp_path / "one").read_bytes()
    module.touch()  # a new mtime must not change the archive
    second = package_python_modules([module], tmp_path / "two")
    assert second.name == PY_MODULES_ZIP and second.read_bytes() == first
    module.write_text("X = 2\n")
    assert package_python_modules([module], tmp_path / "three").read_bytes() != first


@pytest.mark.parametrize(
    "names, message",
    [
        (["notes.txt"], "must be existing .py modules"),
        (["missing.py"], "must be existing .py modules"),
        (["a/x.py", "b/x.py"], "must have distinct file names"),
    ],
)
def test_package_python_modules_rejects_bad_input(tmp_path, names, message):
    paths = []
    for name in names:
        path = tmp_path / name
        if name != "missing.py":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
        paths.append(path)
    with pytest.raises(ValueError, match=message):
        package_python_modules(paths, tmp_path / "out")


# --- several datasets, and the optional crawler ------------------------------------------------------------------
def _dataset_config(document: dict, **triggers):
    """The config that produces ``document`` (a fixture), the way config/<env>.yaml declares a dataset."""
    from platform_config.datasets import DatasetConfig

    columns = [
        {"name": c["name"], "raw": c["raw_name"], "type": c["type"], "nullable": c["nullable"],
         "allowed": c["allowed_values"], "upper_case": c["upper_case"], "min": c["min"], "max": c["max"]}
        for c in document["columns"]
    ]
    return DatasetConfig(name=document["name"], format={k: v for k, v in document["format"].items()},
                         columns=columns, max_reject_ratio=document["max_reject_ratio"], triggers=triggers)


def test_fixture_documents_are_what_the_config_builds():
    for name in ("abalone", "breast_cancer"):
        document = json.loads((FIXTURES / f"{name}.json").read_text())
        assert _dataset_config(document).schema_document() == document, name


@pytest.fixture(scope="module")
def two_datasets(dev):
    """The dev data stack with its second dataset from the fixture document and other triggers (breast_cancer:
    schedule only, no raw-upload trigger)."""
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from stacks.data_stack import DataStack

    first, *others = dev.config.datasets
    assert [d.name for d in others] == ["breast_cancer"]  # the case below replaces dev's second dataset
    second = _dataset_config(json.loads((FIXTURES / "breast_cancer.json").read_text()),
                             raw_upload=False, schedule="rate(1 day)")
    config = dev.config.model_copy(update={"datasets": [first, second]})
    app = App(context=json.loads((REPO / "cdk.json").read_text())["context"])  # the app's feature flags
    stack = DataStack(app, "data", config=config)
    return stack, Template.from_stack(stack).to_json()["Resources"]


def _by_type(resources: dict, cfn_type: str) -> dict:
    return {k: v for k, v in resources.items() if v["Type"] == cfn_type}


def test_a_second_dataset_gets_its_own_job_table_prefixes_and_triggers(dev, two_datasets):
    stack, resources = two_datasets
    assert set(stack.etls) == {"abalone", "breast_cancer"} and stack.etl is stack.etls["abalone"]
    jobs = {j["Properties"]["Name"]: (k, j) for k, j in _by_type(resources, "AWS::Glue::Job").items()}
    assert set(jobs) == {"mlops-dev-etl-abalone", "mlops-dev-etl-breast_cancer"}
    # The first dataset keeps the single-dataset logical IDs; the second is EtlBreastCancer.
    assert jobs["mlops-dev-etl-abalone"][0] in dev.template("data")["Resources"]
    assert jobs["mlops-dev-etl-breast_cancer"][0].startswith("EtlBreastCancerJob")
    args = jobs["mlops-dev-etl-breast_cancer"][1]["Properties"]["DefaultArguments"]
    document = json.loads(args["--dataset_schema"])
    assert document == json.loads((FIXTURES / "breast_cancer.json").read_text())
    assert json.dumps(args["--raw_path"]).endswith('/breast_cancer/"]]}')
    assert json.dumps(args["--quarantine_path"]).endswith('/quarantine/breast_cancer/"]]}')
    tables = {t["Properties"]["TableInput"]["Name"]: t for t in _by_type(resources, "AWS::Glue::Table").values()}
    assert set(tables) == {"abalone", "breast_cancer"}
    assert tables["breast_cancer"]["Properties"]["TableInput"]["StorageDescriptor"]["Columns"] == _table_columns(
        document
    )
    assert len(_by_type(resources, "AWS::Glue::Database")) == 1  # one database for the lake's tables
    rules = {k: r["Properties"] for k, r in _by_type(resources, "AWS::Events::Rule").items() if k.startswith("Etl")}
    second = {k: r for k, r in rules.items() if k.startswith("EtlBreastCancer")}
    assert [r.get("ScheduleExpression") for r in second.values()] == ["rate(1 day)"]  # no raw-upload rule
    raw_rules = [r for r in rules.values() if "EventPattern" in r]
    assert [r["EventPattern"]["detail"]["object"]["key"] for r in raw_rules] == [[{"prefix": "abalone/"}]]


def test_optional_crawler_keeps_the_declared_table(tmp_path):
    from aws_cdk import App, Stack
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_s3 as s3
    from aws_cdk.assertions import Template

    from mlops_constructs.glue_etl import GlueEtl
    from stacks import code_locations as code

    stack = Stack(App(), "lake")
    key = kms.Key(stack, "Key")
    GlueEtl(stack, "Etl", name_prefix="team-dev", dataset_schema=json.loads((FIXTURES / "abalone.json").read_text()),
            raw_bucket=s3.Bucket(stack, "Raw"), curated_bucket=s3.Bucket(stack, "Curated"), encryption_key=key,
            script=code.GLUE_SCRIPT, extra_python_files=code.GLUE_MODULES, crawler=True)
    resources = Template.from_stack(stack).to_json()["Resources"]
    ((table_id, _),) = _by_type(resources, "AWS::Glue::Table").items()
    (crawler,) = _by_type(resources, "AWS::Glue::Crawler").values()
    props = crawler["Properties"]
    ((target,),) = props["Targets"].values()
    assert list(props["Targets"]) == ["CatalogTargets"] and target["Tables"] == ["abalone"]
    assert target["DatabaseName"] == {"Ref": next(k for k in resources if k.startswith("EtlDatabase"))}
    # A changed schema is only logged: the document owns the table; partitions inherit the table's columns.
    assert props["SchemaChangePolicy"] == {"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"}
    partitions = json.loads(props["Configuration"])["CrawlerOutput"]["Partitions"]
    assert partitions == {"AddOrUpdateBehavior": "InheritFromTable"}
    assert table_id in crawler["DependsOn"]
    triggers = {t["Properties"]["Type"]: t["Properties"] for t in _by_type(resources, "AWS::Glue::Trigger").values()}
    assert set(triggers) == {"EVENT", "CONDITIONAL"}
    assert triggers["CONDITIONAL"]["StartOnCreation"] is True
    assert "EventBatchingCondition" not in triggers["CONDITIONAL"]
    crawler_logs = [s for k, p in _by_type(resources, "AWS::IAM::Policy").items() if "CrawlerRole" in k
                    for s in p["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == "CrawlerLogs"]
    assert crawler_logs and "logs:AssociateKmsKey" in crawler_logs[0]["Action"]
    assert len(_by_type(resources, "AWS::Logs::LogGroup")) == 3  # job output and error, crawler


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": None}, "GlueEtl dataset_schema must be a dataset schema document with a 'name'"),
        ({"columns": []}, "GlueEtl dataset_schema: 'columns' must be a non-empty list"),
    ],
)
def test_construct_rejects_a_document_it_cannot_declare(change, message):
    from aws_cdk import App, Stack
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_s3 as s3

    from mlops_constructs.glue_etl import GlueEtl
    from stacks import code_locations as code

    stack = Stack(App(), "lake")
    document = {**json.loads((FIXTURES / "abalone.json").read_text()), **change}
    with pytest.raises(ValueError) as err:
        GlueEtl(stack, "Etl", name_prefix="team-dev", dataset_schema=document, raw_bucket=s3.Bucket(stack, "Raw"),
                curated_bucket=s3.Bucket(stack, "Curated"), encryption_key=kms.Key(stack, "Key"),
                script=code.GLUE_SCRIPT, extra_python_files=code.GLUE_MODULES)
    assert str(err.value) == message
