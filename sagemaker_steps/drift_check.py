"""Model Monitor's data-quality drift check of numerical features (``baseline_drift_check``), in plain Python.

Standard library only: no CDK, no Spark. The Model Monitor analyzer (Deequ on Spark) cannot run on this machine;
this module does what it does for the part drift-triggered retraining acts on, in its file formats, so the demo's
drift-to-retrain path runs on real distances:

- :func:`baseline` (the build's QualityCheck step, ``RegisterNewBaseline``): ``statistics.json`` and
  ``constraints.json`` of the baseline dataset in the documented shapes
  (https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-interpreting-statistics.html and
  model-monitor-byoc-constraints.html), every numerical feature with its ``distribution.kll`` (``buckets`` and the
  ``sketch``: ``parameters`` ``c``/``k`` and ``data``, one list of items per compactor level, an item of level ``h``
  weighing ``2**h``);
- :func:`check` (a monitoring execution): the distance of each numerical feature of the current rows to the
  baseline's sketch, compared with ``monitoring_config.distribution_constraints.comparison_threshold``, as the docs
  describe it: "the maximum absolute difference between the cumulative distribution functions of two distributions"
  (``linf_simple``); with ``comparison_method`` ``Robust`` (``linf_robust``, for few samples, after the two-sample
  Kolmogorov-Smirnov test) the distance is ``max(0, linf_simple - c_alpha * sqrt((n + m) / (n * m)))`` with
  ``c_alpha = 1.8`` (alpha 0.003), Deequ's formula (``com.amazon.deequ.analyzers.Distance``), ``n`` and ``m`` the
  two sample sizes. A distance above the threshold is a ``baseline_drift_check`` violation;
- :func:`write_violations`: ``constraint_violations.json``, ``{"violations": [{"feature_name",
  "constraint_check_type", "description"}]}``
  (https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-interpreting-violations.html);
- :func:`captured_rows`: the rows of data-capture records (JSON lines, ``captureData.endpointInput`` text/csv,
  ``CSV`` or ``BASE64`` encoded), what the monitor reads.

Columns without a header are named ``_c0``, ``_c1``, ... as Spark names them (the platform's baseline and captured
requests are headerless encoded CSV). Not done here: the other checks (data types, completeness, missing or extra
columns, categorical values), string features, ``perform_comparison`` per feature overrides, CloudWatch metrics.
A feature whose baseline has no sketch (e.g. the rehearsal's stand-in baseline, which omits distributions) is not
compared and is listed in :attr:`DriftReport.not_compared`.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

VIOLATIONS_FILE = "constraint_violations.json"
STATISTICS_FILE = "statistics.json"
CONSTRAINTS_FILE = "constraints.json"
DRIFT_CHECK = "baseline_drift_check"
DEFAULT_COMPARISON_THRESHOLD = 0.1
DEFAULT_COMPARISON_METHOD = "Robust"
#: Deequ's default c(alpha), for alpha = 0.003 (Knuth, TAOCP vol. 2, 3.3.1 eq. 15).
C_ALPHA = 1.8
SKETCH_K = 2048
SKETCH_C = 0.64
BUCKETS = 10
_ROBUST = ("robust", "linf_robust")
_SIMPLE = ("simple", "linf_simple")


def column_names(width: int) -> list[str]:
    """Spark's names of a headerless CSV's columns."""
    return [f"_c{i}" for i in range(width)]


def read_csv_rows(text: str) -> list[list[str]]:
    """The non-empty rows of headerless CSV text."""
    return [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]


def _number(value: Any) -> Optional[float]:
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# --- the baseline -------------------------------------------------------------------------------------------------
def kll_sketch(values: Iterable[float], k: int = SKETCH_K, c: float = SKETCH_C) -> list[list[float]]:
    """A KLL sketch of ``values``: compactor levels, level ``h`` holding items of weight ``2**h``. Level ``h`` of
    ``H`` holds at most ``max(2, ceil(k * c**(H-1-h)))`` items; a full level is sorted and every other item (the
    offset alternating) moves up one level. The total weight stays the number of values (an odd item stays put)."""
    levels: list[list[float]] = [sorted(float(v) for v in values)]
    offset = 0
    while True:
        height = len(levels)
        full = next((h for h in range(height) if len(levels[h]) > max(2, math.ceil(k * c ** (height - 1 - h)))),
                    None)
        if full is None:
            return levels
        items = sorted(levels[full])
        kept = [items.pop()] if len(items) % 2 else []
        if full + 1 == height:
            levels.append([])
        levels[full + 1].extend(items[offset::2])
        levels[full] = kept
        offset = 1 - offset


def _buckets(values: Sequence[float], count: int = BUCKETS) -> list[dict[str, float]]:
    low, high = min(values), max(values)
    width = (high - low) / count or 1.0
    counts = [0] * count
    for v in values:
        counts[min(count - 1, int((v - low) / width))] += 1
    return [{"lower_bound": low + i * width, "upper_bound": low + (i + 1) * width if i < count - 1 else high,
             "count": float(n)} for i, n in enumerate(counts)]


def baseline(rows: Sequence[Sequence[str]], names: Optional[Sequence[str]] = None, *,
             comparison_threshold: float = DEFAULT_COMPARISON_THRESHOLD,
             comparison_method: str = DEFAULT_COMPARISON_METHOD) -> tuple[dict[str, Any], dict[str, Any]]:
    """``statistics.json`` and ``constraints.json`` of the baseline ``rows`` (``names``: default ``_c0...``)."""
    if not rows:
        raise ValueError("the baseline dataset has no rows")
    width = max(len(r) for r in rows)
    names = list(names) if names is not None else column_names(width)
    if len(names) != width:
        raise ValueError(f"{len(names)} column names for rows of {width} values")
    total = len(rows)
    features, constraints = [], []
    for index, name in enumerate(names):
        present = [str(r[index]).strip() for r in rows if index < len(r) and str(r[index]).strip() != ""]
        numbers = [_number(v) for v in present]
        common = {"num_present": len(present), "num_missing": total - len(present)}
        completeness = len(present) / total
        if present and all(n is not None for n in numbers):
            nums = [float(n) for n in numbers]  # type: ignore[arg-type]
            integral = all(n.is_integer() and "." not in v and "e" not in v.lower() for n, v in zip(nums, present))
            inferred = "Integral" if integral else "Fractional"
            mean = sum(nums) / len(nums)
            features.append({"name": name, "inferred_type": inferred, "numerical_statistics": {
                "common": common, "mean": mean, "sum": sum(nums),
                "std_dev": math.sqrt(sum((x - mean) ** 2 for x in nums) / len(nums)),
                "min": min(nums), "max": max(nums),
                "distribution": {"kll": {"buckets": _buckets(nums), "sketch": {
                    "parameters": {"c": SKETCH_C, "k": float(SKETCH_K)}, "data": kll_sketch(nums)}}},
            }})
            constraints.append({"name": name, "inferred_type": inferred, "completeness": completeness,
                                "num_constraints": {"is_non_negative": min(nums) >= 0}})
        else:
            distinct = sorted(set(present))
            features.append({"name": name, "inferred_type": "String",
                             "string_statistics": {"common": common, "distinct_count": float(len(distinct))}})
            constraints.append({"name": name, "inferred_type": "String", "completeness": completeness,
                                "string_constraints": {"domains": distinct[:100]}})
    statistics = {"version": 0.0, "dataset": {"item_count": total}, "features": features}
    constraint_doc = {"version": 0.0, "features": constraints, "monitoring_config": {
        "evaluate_constraints": "Enabled", "emit_metrics": "Enabled",
        "datatype_check_threshold": 1.0, "domain_content_threshold": 1.0,
        "distribution_constraints": {"perform_comparison": "Enabled", "comparison_threshold": comparison_threshold,
                                     "comparison_method": comparison_method},
    }}
    return statistics, constraint_doc


def write_baseline(statistics: Mapping[str, Any], constraints: Mapping[str, Any], out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / STATISTICS_FILE, out_dir / CONSTRAINTS_FILE]
    for path, document in zip(paths, (statistics, constraints)):
        path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return paths


# --- the check ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureDistance:
    name: str
    distance: float  # what is compared with the threshold (linf_robust or linf_simple, per comparison_method)
    linf_simple: float
    baseline_count: float  # n: the sketch's total weight
    current_count: int  # m: numeric values in the current rows
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.distance > self.threshold

    def description(self) -> str:
        return f"Baseline drift distance: {self.distance} exceeds threshold: {self.threshold}"


@dataclass
class DriftReport:
    """What one monitoring execution found: a distance per compared feature, and why others were not compared."""

    features: list[FeatureDistance] = field(default_factory=list)
    not_compared: dict[str, str] = field(default_factory=dict)
    method: str = DEFAULT_COMPARISON_METHOD
    rows: int = 0

    @property
    def drifted(self) -> list[FeatureDistance]:
        return [f for f in self.features if f.drifted]

    def violations(self) -> dict[str, Any]:
        """The ``constraint_violations.json`` document."""
        return {"violations": [{"feature_name": f.name, "constraint_check_type": DRIFT_CHECK,
                                "description": f.description()} for f in self.drifted]}

    def distance(self, name: str) -> FeatureDistance:
        return next(f for f in self.features if f.name == name)


def _sketch_cdf(levels: Sequence[Sequence[float]]) -> tuple[list[float], list[float], float]:
    """(sorted items, cumulative weight up to and including each, total weight) of a KLL sketch."""
    weighted = sorted((float(x), 2 ** h) for h, level in enumerate(levels) for x in level)
    points, cumulative, running = [], [], 0.0
    for x, w in weighted:
        running += w
        if points and points[-1] == x:
            cumulative[-1] = running
        else:
            points.append(x)
            cumulative.append(running)
    return points, cumulative, running


def _rank(points: Sequence[float], cumulative: Sequence[float], x: float) -> float:
    """Weight of the items <= x."""
    lo, hi = 0, len(points)
    while lo < hi:
        mid = (lo + hi) // 2
        if points[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return cumulative[lo - 1] if lo else 0.0


def linf_distance(sketch: Sequence[Sequence[float]], values: Sequence[float]) -> tuple[float, float, int]:
    """(linf_simple, n, m): the largest absolute difference of the two cumulative distribution functions, the
    baseline's from its sketch and the current values' (exact). Both are step functions, so the supremum is at one
    of their points."""
    points, cumulative, n = _sketch_cdf(sketch)
    current = sorted(values)
    m = len(current)
    if not n or not m:
        raise ValueError("both distributions need at least one value")
    current_cumulative = [float(i + 1) for i in range(m)]
    largest = 0.0
    for x in set(points) | set(current):
        baseline_cdf = _rank(points, cumulative, x) / n
        current_cdf = _rank(current, current_cumulative, x) / m
        largest = max(largest, abs(baseline_cdf - current_cdf))
    return largest, n, m


def robust(linf_simple: float, n: float, m: float, c_alpha: float = C_ALPHA) -> float:
    """Deequ's linf_robust: the simple distance less the two-sample Kolmogorov-Smirnov critical value."""
    return max(0.0, linf_simple - c_alpha * math.sqrt((n + m) / (n * m)))


def check(statistics: Mapping[str, Any], constraints: Mapping[str, Any], rows: Sequence[Sequence[str]],
          names: Optional[Sequence[str]] = None) -> DriftReport:
    """The ``baseline_drift_check`` of ``rows`` (the current dataset, e.g. one hour of captured requests) against
    the baseline; ``names`` default to ``_c0...``. Raises ValueError for a baseline it cannot read."""
    config = constraints.get("monitoring_config") or {}
    distribution = config.get("distribution_constraints") or {}
    method = str(distribution.get("comparison_method") or DEFAULT_COMPARISON_METHOD)
    if method.lower() not in _ROBUST + _SIMPLE:
        raise ValueError(f"comparison_method {method!r} is not one of Robust, Simple, linf_robust, linf_simple")
    threshold = float(distribution.get("comparison_threshold", DEFAULT_COMPARISON_THRESHOLD))
    report = DriftReport(method=method, rows=len(rows))
    if str(distribution.get("perform_comparison", "Enabled")) != "Enabled":
        report.not_compared = {f.get("name", "?"): "perform_comparison is not Enabled"
                               for f in statistics.get("features", [])}
        return report
    width = max((len(r) for r in rows), default=0)
    names = list(names) if names is not None else column_names(width)
    index = {name: i for i, name in enumerate(names)}
    for feature in statistics.get("features", []):
        name = feature.get("name")
        numerical = feature.get("numerical_statistics")
        if not numerical:
            report.not_compared[name] = f"{feature.get('inferred_type', 'non-numerical')} feature (numerical only)"
            continue
        sketch = ((numerical.get("distribution") or {}).get("kll") or {}).get("sketch") or {}
        data = sketch.get("data")
        if not data or not any(data):
            report.not_compared[name] = "no KLL sketch in the baseline statistics"
            continue
        if name not in index:
            report.not_compared[name] = "not in the current rows"
            continue
        values = [v for v in (_number(r[index[name]]) for r in rows if index[name] < len(r)) if v is not None]
        if not values:
            report.not_compared[name] = "no numerical value in the current rows"
            continue
        simple, n, m = linf_distance(data, values)
        distance = robust(simple, n, m) if method.lower() in _ROBUST else simple
        report.features.append(FeatureDistance(name=name, distance=distance, linf_simple=simple, baseline_count=n,
                                               current_count=m, threshold=threshold))
    return report


def write_violations(report: DriftReport, out_dir: Path) -> Path:
    """``constraint_violations.json`` in ``out_dir`` (an empty list when nothing drifted)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / VIOLATIONS_FILE
    path.write_text(json.dumps(report.violations(), indent=1) + "\n", encoding="utf-8")
    return path


# --- captured requests --------------------------------------------------------------------------------------------
def capture_record(csv_rows: str, event_id: str, inference_time: str, output: Optional[str] = None,
                   output_content_type: str = "text/csv; charset=utf-8") -> dict[str, Any]:
    """One data-capture record (one request) with text/csv input, as the endpoint writes it."""
    data: dict[str, Any] = {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": csv_rows,
                                              "encoding": "CSV"}}
    if output is not None:
        data["endpointOutput"] = {"observedContentType": output_content_type, "mode": "OUTPUT", "data": output,
                                  "encoding": "CSV"}
    return {"captureData": data, "eventMetadata": {"eventId": event_id, "inferenceTime": inference_time},
            "eventVersion": "0"}


def captured_rows(jsonl: str) -> list[list[str]]:
    """The CSV rows of the text/csv requests of data-capture JSON lines (other content types are skipped)."""
    rows: list[list[str]] = []
    for line in jsonl.splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        request = (record.get("captureData") or {}).get("endpointInput") or {}
        if not str(request.get("observedContentType", "")).startswith("text/csv"):
            continue
        data = request.get("data", "")
        if str(request.get("encoding", "CSV")).upper() == "BASE64":
            data = base64.b64decode(data).decode("utf-8")
        rows.extend(read_csv_rows(data))
    return rows
