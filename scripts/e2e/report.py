"""The run's options and its report (JSON and Markdown)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from scripts.e2e.common import DATA_ATTRIBUTION, DEFAULT_DATA

# Options and report
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class Options:
    env: str
    yes: bool = False
    teardown: str = "stacks"
    timeout_minutes: float = 90.0
    report_dir: Path = Path("e2e-report")
    keep_on_failure: bool = False
    allow_prod: bool = False
    model: Optional[str] = None
    region: Optional[str] = None
    rows: int = 5
    data_file: Path = DEFAULT_DATA
    poll_initial_seconds: float = 10.0
    poll_max_seconds: float = 60.0
    heartbeat_seconds: float = 300.0


@dataclass
class StageTiming:
    name: str
    seconds: float
    status: str
    detail: str = ""


@dataclass
class Report:
    run_id: str
    env: str
    model: str
    status: str = "running"
    account: Optional[str] = None
    caller_arn: Optional[str] = None
    region: Optional[str] = None
    failure: Optional[dict[str, str]] = None
    stages: list[StageTiming] = field(default_factory=list)
    raw_object: Optional[str] = None
    data_attribution: str = DATA_ATTRIBUTION
    glue_job_run: Optional[str] = None
    pipeline_execution: Optional[str] = None
    package_arn: Optional[str] = None
    package_version: Optional[int] = None
    metric: Optional[dict[str, Any]] = None
    deploy_execution: Optional[str] = None
    serving_stack: Optional[str] = None
    targets: dict[str, Optional[str]] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    teardown: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc["stages"] = [s.__dict__ for s in self.stages]
        return doc

    def markdown(self) -> str:
        lines = [f"# End-to-end run {self.run_id}: {self.status}", ""]
        lines += [
            f"- environment `{self.env}`, model `{self.model}`, account `{self.account}`, region `{self.region}`",
            f"- caller `{self.caller_arn}`",
        ]
        if self.failure:
            lines.append(f"- **failed at {self.failure['stage']}**: {self.failure['message']}")
        lines += ["", "| stage | status | seconds | detail |", "|---|---|---|---|"]
        lines += [f"| {s.name} | {s.status} | {s.seconds:.1f} | {s.detail} |" for s in self.stages]
        lines += [""]
        facts = [
            ("raw object", self.raw_object), ("Glue job run", self.glue_job_run),
            ("pipeline execution", self.pipeline_execution), ("model package", self.package_arn),
            ("deploy pipeline execution", self.deploy_execution), ("serving stack", self.serving_stack),
        ]
        lines += [f"- {k}: `{v}`" for k, v in facts if v]
        if self.metric:
            m = self.metric
            lines.append(f"- metric {m.get('name')} = {m.get('value')} (threshold {m.get('threshold')}, "
                         f"from {m.get('source')})")
        lines.append(f"- data: {self.data_attribution}")
        if self.predictions:
            kinds = [k for k in ("function_url", "endpoint") if any(k in p for p in self.predictions)]
            lines += ["", "## Predictions (staging)", "", "| row | actual | " + " | ".join(kinds) + " |",
                      "|---|---|" + "---|" * len(kinds)]
            for p in self.predictions:
                cells = [fmt(p.get(k)) for k in kinds]
                lines.append(f"| {p['row']} | {fmt(p.get('actual'))} | " + " | ".join(cells) + " |")
        if self.teardown:
            t = self.teardown
            lines += ["", f"## Teardown ({t.get('mode')})", ""]
            for stack in t.get("destroyed_stacks", []):
                lines.append(f"- stack destroyed: `{stack}`")
            for item in t.get("removed", []):
                lines.append(f"- removed {item['type']}: `{item['id']}`" + (f" ({item['note']})" if item.get("note") else ""))
            for item in t.get("left", []):
                lines.append(f"- left: {item}")
            for err in t.get("errors", []):
                lines.append(f"- **error**: {err}")
        return "\n".join(lines) + "\n"


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items())
    return "" if value is None else str(value)


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"

