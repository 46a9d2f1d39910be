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
from stacks.model_stack import etl_job_name

REPO = Path(__file__).resolve().parents[2]


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


def test_glue_job_runs_glue_5_with_security_configuration_and_bookmarks(dev):
    template = dev.assertions("data")
    template.has_resource_properties(
        "AWS::Glue::Job",
        {
            "GlueVersion": "5.0",
            "Name": etl_job_name(dev.config),  # the name the model stacks' EventBridge rules match
            "Command": {"Name": "glueetl", "PythonVersion": "3"},
            "SecurityConfiguration": {"Ref": Match.string_like_regexp("EtlSecurityConfiguration")},
            "WorkerType": "G.1X",
            "NumberOfWorkers": 2,
            "DefaultArguments": Match.object_like(
                {
                    "--job-bookmark-option": "job-bookmark-enable",
                    "--dataset": "abalone",
                    "--max_reject_ratio": "0.1",
                    "--extra-py-files": Match.any_value(),
                }
            ),
        },
    )
    (sec,) = dev.resources("data", "AWS::Glue::SecurityConfiguration").values()
    enc = sec["Properties"]["EncryptionConfiguration"]
    assert enc["S3Encryptions"][0]["S3EncryptionMode"] == "SSE-KMS"
    assert enc["CloudWatchEncryption"]["CloudWatchEncryptionMode"] == "SSE-KMS"
    assert enc["JobBookmarksEncryption"]["JobBookmarksEncryptionMode"] == "CSE-KMS"


def test_glue_5_job_has_no_continuous_logging_arguments(dev):
    # Glue 5.0 logs in real time by itself; the continuous-logging arguments are documented for 4.0 and earlier.
    (job,) = dev.resources("data", "AWS::Glue::Job").values()
    assert job["Properties"]["GlueVersion"] == "5.0"
    args = job["Properties"]["DefaultArguments"]
    assert not [a for a in args if a.startswith(("--enable-continuous", "--continuous-log"))], sorted(args)


def test_prod_job_scales_from_config(prod):
    prod.assertions("data").has_resource_properties("AWS::Glue::Job", {"NumberOfWorkers": 4})


def test_catalog_crawler_and_workflow(dev):
    template = dev.assertions("data")
    template.has_resource_properties("AWS::Glue::Database", {"DatabaseInput": {"Name": "mlops_dev"}})
    template.has_resource_properties(
        "AWS::Glue::Crawler",
        {
            "RecrawlPolicy": {"RecrawlBehavior": "CRAWL_EVERYTHING"},
            "SchemaChangePolicy": {"UpdateBehavior": "UPDATE_IN_DATABASE", "DeleteBehavior": "LOG"},
            "CrawlerSecurityConfiguration": {"Ref": Match.string_like_regexp("EtlSecurityConfiguration")},
        },
    )
    triggers = {t["Properties"]["Type"]: t["Properties"] for t in dev.resources("data", "AWS::Glue::Trigger").values()}
    assert set(triggers) == {"EVENT", "CONDITIONAL"}
    assert triggers["CONDITIONAL"]["Predicate"]["Conditions"][0]["State"] == "SUCCEEDED"
    rules = dev.resources("data", "AWS::Events::Rule")
    patterns = [r["Properties"].get("EventPattern") for r in rules.values()]
    schedules = [r["Properties"].get("ScheduleExpression") for r in rules.values()]
    assert any(p and p["detail-type"] == ["Object Created"] for p in patterns)
    assert "cron(0 3 * * ? *)" in schedules


def test_every_crawler_uses_a_recrawl_policy_glue_accepts(synthesized):
    # "Crawl new folders only" forces LOG for both update and delete behaviour (Glue: incremental crawls).
    crawlers = synthesized.all_resources("AWS::Glue::Crawler")
    assert crawlers
    for logical_id, crawler in crawlers.items():
        props = crawler["Properties"]
        if props.get("RecrawlPolicy", {}).get("RecrawlBehavior") == "CRAWL_NEW_FOLDERS_ONLY":
            assert props["SchemaChangePolicy"] == {"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"}, logical_id


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


def test_glue_log_groups_have_retention_and_encryption(dev):
    groups = dev.resources("data", "AWS::Logs::LogGroup")
    assert len(groups) == 3
    for logical_id, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == 30, logical_id
        assert "KmsKeyId" in group["Properties"], logical_id


def test_job_role_is_scoped_to_dataset_prefixes(dev):
    policies = [
        p for k, p in dev.resources("data", "AWS::IAM::Policy").items() if "JobRole" in k
    ]
    (policy,) = policies
    resources = []
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        res = statement["Resource"]
        resources.extend(res if isinstance(res, list) else [res])
    rendered = [str(r) for r in resources]
    assert not any(r.endswith("Arn']}/*']]}") for r in rendered)
    assert any("/abalone/*" in r for r in rendered)
    assert any("/quarantine/abalone/*" in r for r in rendered)


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


def test_retained_log_groups_are_named_after_generated_role_names(dev):
    template = dev.template("data")["Resources"]
    groups = dev.resources("data", "AWS::Logs::LogGroup")
    for logical_id, group in groups.items():
        assert group["DeletionPolicy"] == "Retain", logical_id
        name = group["Properties"]["LogGroupName"]
        # A fixed string would make a redeploy after a delete fail on the retained group: the name must contain a
        # role name CloudFormation generates (IAM roles of the stack carry no RoleName).
        roles = [r for r in _refs(name) if template[r]["Type"] == "AWS::IAM::Role"]
        assert roles, (logical_id, name)
        assert all("RoleName" not in template[r]["Properties"] for r in roles)
    rendered = sorted(json.dumps(g["Properties"]["LogGroupName"]) for g in groups.values())
    assert sum("/aws-glue/jobs/" in r for r in rendered) == 2  # output and error of the encrypted job logs
    assert sum("/aws-glue/crawlers-role/" in r for r in rendered) == 1


def test_no_fixed_name_for_security_configuration_crawler_or_triggers(dev):
    (sec,) = dev.resources("data", "AWS::Glue::SecurityConfiguration").values()
    assert sec["Properties"]["Name"] != f"{dev.config.prefix()}-etl"  # generated from the construct path
    (crawler,) = dev.resources("data", "AWS::Glue::Crawler").values()
    assert "Name" not in crawler["Properties"]
    assert all("Name" not in t["Properties"] for t in dev.resources("data", "AWS::Glue::Trigger").values())
    # Catalog metadata is deleted with the stack (the crawler rebuilds it), so its fixed name never blocks a redeploy.
    (database,) = dev.resources("data", "AWS::Glue::Database").values()
    assert database.get("DeletionPolicy", "Delete") == "Delete"


def _statements(dev, role_fragment: str) -> list[dict]:
    policies = [p for k, p in dev.resources("data", "AWS::IAM::Policy").items() if role_fragment in k]
    assert policies, role_fragment
    return [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _resources(statement: dict) -> list:
    res = statement["Resource"]
    return res if isinstance(res, list) else [res]


def test_crawler_may_write_its_encrypted_log_group(dev):
    (logs_statement,) = [s for s in _statements(dev, "CrawlerRole") if s.get("Sid") == "CrawlerLogs"]
    assert "logs:AssociateKmsKey" in logs_statement["Action"]
    rendered = [json.dumps(r) for r in _resources(logs_statement)]
    for r in rendered:  # every ARN names a log group (the old one ended at "log-group")
        assert ":log-group:" in r and not r.rstrip('"]}').endswith(":log-group"), r
    (crawler_group,) = [k for k in dev.resources("data", "AWS::Logs::LogGroup") if "CrawlerLogs" in k]
    # The group itself (AssociateKmsKey, CreateLogGroup) and its streams.
    assert sum(crawler_group in r for r in rendered) == 2
    assert any(r.endswith(':log-group:/aws-glue/crawlers:*"]]}') for r in rendered)


def test_job_may_write_and_encrypt_its_log_groups(dev):
    (logs_statement,) = [s for s in _statements(dev, "JobRole") if s.get("Sid") == "JobLogs"]
    assert {"logs:AssociateKmsKey", "logs:CreateLogStream", "logs:PutLogEvents"} <= set(logs_statement["Action"])
    rendered = [json.dumps(r) for r in _resources(logs_statement)]
    assert len(rendered) == 4  # output and error: group and streams
    assert not any("Fn::GetAtt" in r for r in rendered)  # GetAtt Arn ends in ":*" and misses the group itself


# --- the ETL code as Glue stages it -------------------------------------------------------------------------------
def _job_asset_paths(synth) -> tuple[Path, Path]:
    """Local files of the job's script and --extra-py-files assets, found through the stack's asset manifest."""
    (job,) = synth.resources("data", "AWS::Glue::Job").values()
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


def test_extra_py_files_is_a_zip_of_etl_transform(dev):
    script, modules = _job_asset_paths(dev)
    assert script.read_bytes() == (REPO / "glue_jobs" / "etl_job.py").read_bytes()
    assert modules.suffix == ".zip"
    with zipfile.ZipFile(modules) as archive:
        assert archive.namelist() == ["etl_transform.py"]
        assert archive.read("etl_transform.py") == (REPO / "glue_jobs" / "etl_transform.py").read_bytes()


def test_extra_py_files_asset_hash_depends_on_content_only(dev, prod):
    # Two syntheses write the zip to different temporary directories: same code, same S3 object.
    keys = []
    for synth in (dev, prod):
        (job,) = synth.resources("data", "AWS::Glue::Job").values()
        keys.append(json.dumps(job["Properties"]["DefaultArguments"]["--extra-py-files"]).split("/")[-1])
    assert keys[0] == keys[1] and ".zip" in keys[0]


def test_etl_job_imports_etl_transform_as_glue_stages_it(dev, tmp_path):
    # Glue runs the script asset by its <hash>.py name with each --extra-py-files object on sys.path.
    script, modules = _job_asset_paths(dev)
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
