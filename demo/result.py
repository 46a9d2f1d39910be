"""What a demo run produces (:class:`DemoResult`), how it stops on purpose (:class:`DemoFailed`), and its progress
output: one ``[n/7] <stage>`` line per stage, indented detail lines, the stage's seconds."""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TextIO

STAGE_NAMES = (
    "Stand-in AWS (moto)",
    "Raw upload",
    "Glue ETL (local PySpark)",
    "Model build (SageMaker pipeline steps)",
    "Approve and resolve",
    "Serve the inference Lambda over HTTP",
    "Report",
)


class DemoFailed(RuntimeError):
    """The loop stopped on purpose (the model failed the registration condition, or the ETL gate); has ``result``."""

    def __init__(self, message: str, result: "DemoResult"):
        super().__init__(message)
        self.result = result


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
    git_commit: str = "unknown"
    resolve_exit_code: Optional[int] = None
    resolved: dict = field(default_factory=dict)
    serving_url: str = ""
    requests: list[RequestResult] = field(default_factory=list)
    batch_matches_evaluation: Optional[bool] = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    report_dir: Optional[Path] = None
    report_files: dict[str, Path] = field(default_factory=dict)
    exit_code: int = 0

    def request(self, name: str) -> RequestResult:
        for r in self.requests:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["report_dir"] = str(self.report_dir) if self.report_dir else None
        data["report_files"] = {k: str(v) for k, v in self.report_files.items()}
        return data


class Progress:
    """The console output of a run; records each stage's seconds in the result."""

    def __init__(self, result: DemoResult, out: TextIO):
        self.result = result
        self.out = out

    def say(self, text: str) -> None:
        print(f"      {text}", file=self.out, flush=True)

    @contextlib.contextmanager
    def stage(self, number: int) -> Iterator[None]:
        name = STAGE_NAMES[number - 1]
        print(f"[{number}/{len(STAGE_NAMES)}] {name}", file=self.out, flush=True)
        started = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - started
            self.result.stage_seconds[f"{number}. {name}"] = round(seconds, 2)
            print(f"      ({seconds:.1f} s)", file=self.out, flush=True)

    def run(self, number: int, stage: Callable[..., None], *args: Any) -> None:
        """Run one stage under its ``[n/7]`` heading."""
        with self.stage(number):
            stage(*args)
