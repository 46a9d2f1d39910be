"""Security and behaviour of the data stack: lake buckets, key, Glue ETL."""

from __future__ import annotations

from aws_cdk.assertions import Match


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
            "Name": "mlops-dev-etl-abalone",
            "Command": {"Name": "glueetl", "PythonVersion": "3"},
            "SecurityConfiguration": {"Ref": Match.string_like_regexp("EtlSecurityConfiguration")},
            "WorkerType": "G.1X",
            "NumberOfWorkers": 2,
            "DefaultArguments": Match.object_like(
                {
                    "--job-bookmark-option": "job-bookmark-enable",
                    "--enable-continuous-cloudwatch-log": "true",
                    "--dataset": "abalone",
                    "--max_reject_ratio": "0.1",
                    "--extra-py-files": Match.any_value(),
                }
            ),
        },
    )
    (sec,) = dev.resources("data", "AWS::Glue::SecurityConfiguration").values()
    assert sec["Properties"]["Name"] == "mlops-dev-etl"
    enc = sec["Properties"]["EncryptionConfiguration"]
    assert enc["S3Encryptions"][0]["S3EncryptionMode"] == "SSE-KMS"
    assert enc["CloudWatchEncryption"]["CloudWatchEncryptionMode"] == "SSE-KMS"
    assert enc["JobBookmarksEncryption"]["JobBookmarksEncryptionMode"] == "CSE-KMS"


def test_prod_job_scales_from_config(prod):
    prod.assertions("data").has_resource_properties("AWS::Glue::Job", {"NumberOfWorkers": 4})


def test_catalog_crawler_and_workflow(dev):
    template = dev.assertions("data")
    template.has_resource_properties("AWS::Glue::Database", {"DatabaseInput": {"Name": "mlops_dev"}})
    template.has_resource_properties(
        "AWS::Glue::Crawler",
        {"Name": "mlops-dev-curated-abalone", "RecrawlPolicy": {"RecrawlBehavior": "CRAWL_NEW_FOLDERS_ONLY"}},
    )
    triggers = {t["Properties"]["Type"]: t["Properties"] for t in dev.resources("data", "AWS::Glue::Trigger").values()}
    assert set(triggers) == {"EVENT", "CONDITIONAL"}
    assert triggers["CONDITIONAL"]["Predicate"]["Conditions"][0]["State"] == "SUCCEEDED"
    rules = dev.resources("data", "AWS::Events::Rule")
    patterns = [r["Properties"].get("EventPattern") for r in rules.values()]
    schedules = [r["Properties"].get("ScheduleExpression") for r in rules.values()]
    assert any(p and p["detail-type"] == ["Object Created"] for p in patterns)
    assert "cron(0 3 * * ? *)" in schedules


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
