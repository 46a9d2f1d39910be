"""Snapshot of every synthesized template (dev and prod), asset hashes and CDK version metadata masked.

A change to a template shows up as a readable diff in review. After an intended change:
`.venv/bin/python -m pytest tests/infra/test_snapshots.py --snapshot-update` and commit the new snapshot.
"""

from __future__ import annotations

import json
import re

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

ASSET_HASH = re.compile(r"[0-9a-f]{64}")


def normalized(template: dict) -> dict:
    resources = {k: v for k, v in template["Resources"].items() if v["Type"] != "AWS::CDK::Metadata"}
    conditions = {k: v for k, v in template.get("Conditions", {}).items() if k != "CDKMetadataAvailable"}
    out = {**template, "Resources": resources}
    if conditions:
        out["Conditions"] = conditions
    else:
        out.pop("Conditions", None)
    out.pop("Rules", None)  # the bootstrap version check
    return json.loads(ASSET_HASH.sub("<asset-hash>", json.dumps(out, sort_keys=True)))


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
    assert set(masked["Resources"]) == {k for k, v in template["Resources"].items() if v["Type"] != "AWS::CDK::Metadata"}
