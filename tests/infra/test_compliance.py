"""Compliance gate: cdk-nag (AwsSolutions) clean, cfn-lint clean, no broad IAM, retention everywhere, cost tags."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

import cfnlint.api


def test_nag_passes_with_zero_unacknowledged_findings(synthesized):
    # The session fixture synthesizes with AwsSolutionsChecks; a finding would have failed it with the report.
    report = synthesized.outdir / "validation-report.json"
    if report.exists():
        data = json.loads(report.read_text())
        violations = [v for r in data["pluginReports"] for v in r.get("violations", [])]
        assert violations == []


def test_an_unacknowledged_finding_fails_synth(tmp_path):
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Bad")
    s3.Bucket(stack, "Unencrypted")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for r in report["pluginReports"] for v in r["violations"]}
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= rules


# Acknowledged by aws-cdk-lib itself (ec2.FlowLog, for DestinationOptions' camelCase keys), not by this project.
CDK_OWN_ACKNOWLEDGEMENTS = {"CloudFormation-Validate::F3002", "CloudFormation-Validate::F3003"}


def test_every_acknowledgement_has_a_specific_reason(synthesized):
    reasons = []
    for stack in synthesized.stacks.values():
        for child in stack.node.find_all():
            for entry in child.node.metadata:
                if "acknowledge" in str(entry.type).lower():
                    reasons.append(entry.data)
    assert reasons, "expected acknowledgements recorded as construct metadata"
    for data in reasons:
        for rule, reason in data.items():
            if rule in CDK_OWN_ACKNOWLEDGEMENTS:
                continue
            assert rule.startswith("AwsSolutions::AwsSolutions-"), rule
            assert len(reason) >= 40 and "TODO" not in reason, (rule, reason)


def test_cfn_lint_reports_no_errors(synthesized):
    errors = []
    for name in synthesized.templates:
        path = synthesized.outdir / f"{name}.template.json"
        matches = cfnlint.api.lint_file(path, cfnlint.api.ManualArgs(regions=["us-east-1", "eu-west-1"]))
        errors += [f"{name}: {m}" for m in matches if m.rule.severity == "error"]
    assert errors == []


def _boundaries(template: dict) -> set[str]:
    """Logical IDs of the managed policies roles use as their permissions boundary (a cap, not a grant)."""
    return {
        res["Properties"]["PermissionsBoundary"].get("Ref")
        for res in template["Resources"].values()
        if res["Type"] == "AWS::IAM::Role" and isinstance(res["Properties"].get("PermissionsBoundary"), dict)
    }


def _statements(template: dict):
    boundaries = _boundaries(template)
    for logical_id, res in template["Resources"].items():
        if logical_id in boundaries:
            continue
        props = res.get("Properties", {})
        docs = [props.get("PolicyDocument")] + [p.get("PolicyDocument") for p in props.get("Policies", [])]
        for doc in filter(None, docs):
            yield from doc["Statement"]


def test_no_full_access_managed_policies_and_no_all_buckets(synthesized):
    for name, template in synthesized.templates.items():
        text = json.dumps(template)
        assert "FullAccess" not in text, name
        assert "arn:aws:s3:::*" not in text, name
        for statement in _statements(template):
            if statement["Effect"] == "Deny":
                continue  # e.g. the TLS-only bucket policies deny s3:* on purpose
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert "*" not in actions and "s3:*" not in actions, (name, statement)


def test_every_log_group_has_retention_and_a_kms_key(synthesized):
    groups = synthesized.all_resources("AWS::Logs::LogGroup")
    assert groups
    for logical_id, group in groups.items():
        assert group["Properties"].get("RetentionInDays") == synthesized.config.log_retention_days, logical_id
        assert "KmsKeyId" in group["Properties"], logical_id


def test_every_taggable_resource_carries_cost_tags(synthesized):
    cfg = synthesized.config
    for cfn_type in ("AWS::S3::Bucket", "AWS::KMS::Key", "AWS::Glue::Job", "AWS::IAM::Role"):
        for logical_id, res in synthesized.all_resources(cfn_type).items():
            raw = res["Properties"].get("Tags", [])
            tags = raw if isinstance(raw, dict) else {t["Key"]: t["Value"] for t in raw}
            assert tags.get("project") == cfg.project, logical_id
            assert tags.get("environment") == cfg.environment, logical_id
            assert tags.get("cost-center") == cfg.tags.cost_center, logical_id
            assert "model" in tags, logical_id


def test_every_checkov_skip_has_a_reason(synthesized):
    """checkov reads Metadata.checkov.skip (compliance.checkov_skip); each skip names a check and why it does not
    apply. `make checkov ENV=<env>` runs checkov itself and reports the failure rate."""
    skips = [
        (name, logical, skip)
        for name, template in synthesized.templates.items()
        for logical, res in template["Resources"].items()
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips, "expected checkov skips (e.g. the access-log bucket's own logging)"
    for name, logical, skip in skips:
        assert skip["id"].startswith("CKV_") and len(skip.get("comment", "")) >= 40, (name, logical, skip)
