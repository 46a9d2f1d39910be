"""sagemaker_steps/drift_check.py: Model Monitor's baseline_drift_check of numerical features in plain Python (the
baseline's KLL sketch, the L-infinity distance of the CDFs, the robust correction, constraint_violations.json)."""

from __future__ import annotations

import base64
import json
import math
import random

import pytest

from sagemaker_steps import drift_check as dc


def _rows(count: int, seed: int, *, scale: dict[int, float] | None = None) -> list[list[str]]:
    """Encoded rows as the endpoint receives them: a one-hot pair, then three numbers (like abalone's)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        hot = rng.random() < 0.4
        values = [1.0 if hot else 0.0, 0.0 if hot else 1.0, rng.gauss(0.52, 0.12), rng.gauss(0.41, 0.10),
                  rng.uniform(0.0, 2.5)]
        for index, factor in (scale or {}).items():
            values[index] *= factor
        rows.append([repr(v) for v in values])
    return rows


@pytest.fixture(scope="module")
def documents():
    return dc.baseline(_rows(3000, seed=1))


def test_baseline_has_model_monitor_shapes_and_a_sketch_per_numerical_feature(documents):
    statistics, constraints = documents
    assert statistics["dataset"] == {"item_count": 3000}
    assert [f["name"] for f in statistics["features"]] == ["_c0", "_c1", "_c2", "_c3", "_c4"]
    for feature in statistics["features"]:
        numerical = feature["numerical_statistics"]
        assert feature["inferred_type"] == "Fractional"
        assert numerical["common"] == {"num_present": 3000, "num_missing": 0}
        kll = numerical["distribution"]["kll"]
        assert sum(b["count"] for b in kll["buckets"]) == 3000
        assert kll["sketch"]["parameters"] == {"c": 0.64, "k": 2048.0}
        levels = kll["sketch"]["data"]
        assert sum(len(level) * 2 ** h for h, level in enumerate(levels)) == 3000  # compacted, weight kept
        assert len(levels) > 1 and sum(len(level) for level in levels) <= 2048 + 2
    distribution = constraints["monitoring_config"]["distribution_constraints"]
    assert distribution == {"perform_comparison": "Enabled", "comparison_threshold": 0.1,
                            "comparison_method": "Robust"}
    assert [c["name"] for c in constraints["features"]] == ["_c0", "_c1", "_c2", "_c3", "_c4"]


def test_unchanged_data_has_no_violation(documents):
    report = dc.check(*documents, _rows(400, seed=2))
    assert report.rows == 400 and [f.name for f in report.features] == ["_c0", "_c1", "_c2", "_c3", "_c4"]
    assert report.drifted == [] and report.violations() == {"violations": []}
    assert all(f.distance == 0.0 and f.linf_simple < 0.1 for f in report.features)  # sampling noise only


def test_shifted_features_are_named_in_the_violations(documents, tmp_path):
    report = dc.check(*documents, _rows(400, seed=3, scale={2: 1.8, 3: 1.8}))
    assert [f.name for f in report.drifted] == ["_c2", "_c3"]
    for name in ("_c2", "_c3"):
        f = report.distance(name)
        assert f.linf_simple > 0.7 and f.baseline_count == 3000 and f.current_count == 400
        assert f.distance == pytest.approx(f.linf_simple - 1.8 * math.sqrt((3000 + 400) / (3000 * 400)))
    path = dc.write_violations(report, tmp_path / "out")
    document = json.loads(path.read_text())
    assert path.name == "constraint_violations.json"
    assert [(v["feature_name"], v["constraint_check_type"]) for v in document["violations"]] == [
        ("_c2", "baseline_drift_check"), ("_c3", "baseline_drift_check")]
    assert document["violations"][0]["description"] == (
        f"Baseline drift distance: {report.distance('_c2').distance} exceeds threshold: 0.1")


def test_the_robust_method_forgives_few_samples_the_simple_one_does_not(documents):
    statistics, constraints = documents
    few = _rows(12, seed=4)
    assert dc.check(statistics, constraints, few).drifted == []
    simple = json.loads(json.dumps(constraints))
    simple["monitoring_config"]["distribution_constraints"]["comparison_method"] = "linf_simple"
    report = dc.check(statistics, simple, few)
    assert all(f.distance == f.linf_simple for f in report.features)
    assert report.drifted  # 12 draws: some CDF lies more than 0.1 off


def test_linf_distance_of_known_distributions():
    # baseline 1..10 (exact sketch); current 6..15: the CDFs differ by 0.5 from 5 to 14
    assert dc.linf_distance([[float(i) for i in range(1, 11)]], [float(i) for i in range(6, 16)]) == (0.5, 10, 10)
    assert dc.linf_distance([[1.0, 2.0, 3.0]], [1.0, 2.0, 3.0])[0] == 0.0
    # weights: level 1 items count twice
    assert dc.linf_distance([[], [1.0, 3.0]], [1.0, 1.0, 3.0, 3.0])[0] == 0.0
    assert dc.robust(0.5, 10, 10) == pytest.approx(max(0.0, 0.5 - 1.8 * math.sqrt(0.2)))


def test_threshold_and_switch_come_from_constraints(documents):
    statistics, constraints = documents
    shifted = _rows(400, seed=5, scale={4: 1.3})
    assert [f.name for f in dc.check(statistics, constraints, shifted).drifted] == ["_c4"]
    loose = json.loads(json.dumps(constraints))
    loose["monitoring_config"]["distribution_constraints"]["comparison_threshold"] = 0.9
    assert dc.check(statistics, loose, shifted).drifted == []
    off = json.loads(json.dumps(constraints))
    off["monitoring_config"]["distribution_constraints"]["perform_comparison"] = "Disabled"
    report = dc.check(statistics, off, shifted)
    assert report.features == [] and set(report.not_compared) == {"_c0", "_c1", "_c2", "_c3", "_c4"}
    bad = json.loads(json.dumps(constraints))
    bad["monitoring_config"]["distribution_constraints"]["comparison_method"] = "Wasserstein"
    with pytest.raises(ValueError, match="comparison_method"):
        dc.check(statistics, bad, shifted)


def test_a_baseline_without_distributions_or_strings_is_not_compared():
    statistics, constraints = dc.baseline([["a", "1.0"], ["b", "2.0"], ["a", "3.0"]])
    assert statistics["features"][0]["inferred_type"] == "String"
    del statistics["features"][1]["numerical_statistics"]["distribution"]  # e.g. the rehearsal's stand-in
    report = dc.check(statistics, constraints, [["a", "9.0"]])
    assert report.features == []
    assert report.not_compared == {"_c0": "String feature (numerical only)",
                                   "_c1": "no KLL sketch in the baseline statistics"}


def test_captured_rows_read_csv_and_base64_requests():
    plain = dc.capture_record("1,0,0.5\n0,1,0.4\n", "e1", "2024-05-01T13:00:00Z", output="7.1\n6.2\n")
    encoded = dc.capture_record("", "e2", "2024-05-01T13:00:01Z")
    encoded["captureData"]["endpointInput"].update(data=base64.b64encode(b"1,0,0.6").decode(), encoding="BASE64")
    json_request = dc.capture_record("", "e3", "2024-05-01T13:00:02Z")
    json_request["captureData"]["endpointInput"]["observedContentType"] = "application/json"
    jsonl = "\n".join(json.dumps(r) for r in (plain, encoded, json_request)) + "\n"
    assert dc.captured_rows(jsonl) == [["1", "0", "0.5"], ["0", "1", "0.4"], ["1", "0", "0.6"]]
    assert plain["captureData"]["endpointOutput"]["data"] == "7.1\n6.2\n"
