"""What a demo run produces (:class:`DemoRun`, one :class:`DemoResult` per model), how it stops on purpose
(:class:`DemoFailed`), and its progress output: one ``[n/7] <stage>`` line per stage (stages 2 to 6 once per model,
the model's name in brackets), indented detail lines, the stage's seconds."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TextIO

STAGE_NAMES = (
    "Stand-in AWS (moto)",
    "Raw upload",
    "Glue ETL (local PySpark)",
    "Model build (SageMaker pipeline steps)",
    "Approve and resolve",
    "Serve (the inference Lambda over HTTP; the endpoint's handlers where enabled)",
    "Report",
)


class DemoFailed(RuntimeError):
    """The loop stopped on purpose (a model failed the registration condition, or the ETL gate); has ``result`` (a
    :class:`DemoRun` from :func:`demo.loop.run_demo`; the model's :class:`DemoResult` inside a stage)."""

    def __init__(self, message: str, result: Any):
        super().__init__(message)
        self.result = result


def score(prediction: Any) -> float:
    """A prediction as one number: the value (regression) or P(positive) (binary: the Lambda's ``probability``)."""
    return float(prediction["probability"] if isinstance(prediction, dict) else prediction)


@dataclass
class RequestResult:
    name: str
    status: int
    latency_ms: float
    expected: str  # "200" or "4xx"
    ok: bool  # the status is the expected one
    count: Optional[int] = None
    predictions: Optional[list] = None
    error: Optional[str] = None
    message: Optional[str] = None


@dataclass
class DemoResult:
    env: str
    model: str
    dataset: str
    sample: Optional[int]
    region: str
    buckets: dict[str, str] = field(default_factory=dict)
    model_package_group: str = ""
    endpoint_url: str = ""
    raw_uri: str = ""
    rows_in: int = 0
    rows_curated: int = 0
    rows_rejected: int = 0
    curated_objects: int = 0
    quarantine_objects: int = 0
    problem_type: str = ""
    metric: str = ""
    metric_value: Optional[float] = None
    threshold: Optional[float] = None
    higher_is_better: bool = False
    passed: Optional[bool] = None
    fail_message: Optional[str] = None
    evaluation: dict = field(default_factory=dict)
    step_seconds: dict[str, float] = field(default_factory=dict)
    model_data_url: str = ""
    evaluation_uri: str = ""
    packages_registered: int = 0
    package_arn: Optional[str] = None
    package_version: Optional[int] = None
    package_status: Optional[str] = None
    package_metadata: dict = field(default_factory=dict)
    package_group_of_arn: Optional[str] = None
    serving: dict[str, Any] = field(default_factory=dict)  # what the config serves and what the demo served
    drift: dict[str, Any] = field(default_factory=dict)  # drift -> retrain -> cooldown (demo.drift)
    endpoint_predictions: Optional[list] = None  # the package's serve.py, as the endpoint runs it, on the batch
    endpoint_matches_evaluation: Optional[bool] = None
    git_commit: str = "unknown"
    resolve_exit_code: Optional[int] = None
    resolved: dict = field(default_factory=dict)
    serving_url: str = ""
    requests: list[RequestResult] = field(default_factory=list)
    batch_matches_evaluation: Optional[bool] = None
    stage_seconds: dict[str, float] = field(default_factory=dict)  # stages 2 to 6 of this model
    files: dict[str, Path] = field(default_factory=dict)  # this model's files in the report (plot, Lambda log)

    def request(self, name: str) -> RequestResult:
        return _named(self.requests, "name", name)


@dataclass
class DemoRun:
    """A whole demo run: the shared stand-in and report, and one :class:`DemoResult` per model, in config order."""

    env: str
    sample: Optional[int]
    region: str
    buckets: dict[str, str] = field(default_factory=dict)
    endpoint_url: str = ""
    models: list[DemoResult] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # stages 1 and 7 (the models have 2 to 6)
    total_seconds: float = 0.0
    report_dir: Optional[Path] = None
    report_files: dict[str, Path] = field(default_factory=dict)
    exit_code: int = 0

    def model(self, name: str) -> DemoResult:
        return _named(self.models, "model", name)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.models)

    def failed(self) -> list[DemoResult]:
        return [r for r in self.models if not r.passed]

    def all_seconds(self) -> float:
        return sum(self.stage_seconds.values()) + sum(sum(r.stage_seconds.values()) for r in self.models)


def _named(items: list[Any], key: str, name: str) -> Any:
    """The item whose ``key`` attribute is ``name``; KeyError if none."""
    found = [item for item in items if getattr(item, key) == name]
    if not found:
        raise KeyError(name)
    return found[0]


class Progress:
    """The console output of a run; records each stage's seconds in the given dict."""

    def __init__(self, out: TextIO):
        self.out = out

    def say(self, text: str) -> None:
        print(f"      {text}", file=self.out, flush=True)

    def heading(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    @contextlib.contextmanager
    def stage(self, number: int, seconds: dict[str, float], label: str = "") -> Iterator[None]:
        name = STAGE_NAMES[number - 1]
        print(f"[{number}/{len(STAGE_NAMES)}] {name}" + (f" [{label}]" if label else ""), file=self.out, flush=True)
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            seconds[f"{number}. {name}"] = round(elapsed, 2)
            print(f"      ({elapsed:.1f} s)", file=self.out, flush=True)

    def run(self, number: int, seconds: dict[str, float], stage: Callable[..., None], *args: Any,
            label: str = "") -> None:
        """Run one stage under its ``[n/7]`` heading; its seconds go to ``seconds``."""
        with self.stage(number, seconds, label):
            stage(*args)
