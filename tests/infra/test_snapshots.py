"""Snapshot of every synthesized template (dev and prod), asset and Lambda version hashes and CDK metadata masked.

A change to a template shows up as a readable diff in review. After an intended change:
`.venv/bin/python -m pytest tests/infra/test_snapshots.py --snapshot-update` and commit the new snapshot.
"""

from __future__ import annotations

import json
import re

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

ASSET_HASH = re.compile(r"[0-9a-f]{64}")
# A Lambda version's logical ID ends in a hash of the function's configuration, code asset included.
VERSION_HASH = re.compile(r"(CurrentVersion[0-9A-F]{8})[0-9a-f]{32}")


def normalized(template: dict) -> dict:
    resources = {k: v for k, v in template["Resources"].items() if v["Type"] != "AWS::CDK::Metadata"}
    conditions = {k: v for k, v in template.get("Conditions", {}).items() if k != "CDKMetadataAvailable"}
    out = {**template, "Resources": resources}
    if conditions:
        out["Conditions"] = conditions
    else:
        out.pop("Conditions", None)
    out.pop("Rules", None)  # the bootstrap version check
    text = ASSET_HASH.sub("<asset-hash>", json.dumps(out, sort_keys=True))
    return json.loads(VERSION_HASH.sub(r"\1<version-hash>", text))


@pytest.fixture
def snapshot_json(snapshot):
    return snapshot.use_extension(JSONSnapshotExtension)


def test_templates_match_snapshots(synthesized, snapshot_json):
    for name in sorted(synthesized.templates):
        assert normalized(synthesized.templates[name]) == snapshot_json(name=name)


def test_masking_keeps_the_template_shape(dev):
    template = dev.template("model-abalone")
    masked = normalized(template)
    assert "<asset-hash>" in json.dumps(masked)
    serving = json.dumps(normalized(dev.template("serving-abalone-staging")))
    assert "CurrentVersion" in serving and "<version-hash>" in serving
    assert set(masked["Resources"]) == {k for k, v in template["Resources"].items() if v["Type"] != "AWS::CDK::Metadata"}
