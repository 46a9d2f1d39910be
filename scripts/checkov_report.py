"""checkov on the synthesized templates of one environment: passed, failed, skipped (with their reasons).

    make checkov ENV=prod                      # synthesizes ENV with every serving stack, then runs this
    python scripts/checkov_report.py --cdk-out build/checkov/cdk.out --checkov .venv-checkov/bin/checkov

The failure rate is failed / (passed + failed). Each remaining finding is skipped in its resource's metadata
(``Metadata.checkov.skip``, written by ``mlops_constructs.compliance.checkov_skip``) with the reason; the report lists
them. Exits 1 when the failure rate is above ``--max-failed-percent`` (default 1) or a skip has no reason.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path


def run_checkov(checkov: str, cdk_out: Path) -> list[dict]:
    proc = subprocess.run(
        [checkov, "-d", str(cdk_out), "--framework", "cloudformation", "--compact", "-o", "json"],
        capture_output=True, text=True,
    )
    if not proc.stdout.strip():
        raise SystemExit(f"checkov produced no report (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    report = json.loads(proc.stdout)
    return report if isinstance(report, list) else [report]


def summarize(reports: list[dict]) -> dict:
    passed = failed = skipped = 0
    failures, skips = [], []
    for report in reports:
        summary = report.get("summary", {})
        passed += summary.get("passed", 0)
        failed += summary.get("failed", 0)
        skipped += summary.get("skipped", 0)
        results = report.get("results", {})
        for check in results.get("failed_checks", []):
            failures.append((check["check_id"], Path(check["file_path"]).name, check["resource"]))
        for check in results.get("skipped_checks", []):
            reason = (check.get("check_result") or {}).get("suppress_comment", "")
            skips.append((check["check_id"], Path(check["file_path"]).name, check["resource"], reason))
    total = passed + failed
    return {
        "passed": passed, "failed": failed, "skipped": skipped,
        "failed_percent": round(100.0 * failed / total, 2) if total else 0.0,
        "failures": failures, "skips": skips,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cdk-out", type=Path, required=True)
    parser.add_argument("--checkov", default="checkov")
    parser.add_argument("--max-failed-percent", type=float, default=1.0)
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    result = summarize(run_checkov(args.checkov, args.cdk_out))
    print(f"checkov: {result['passed']} passed, {result['failed']} failed ({result['failed_percent']}% of checks), "
          f"{result['skipped']} skipped in metadata with a reason")
    for check_id, template, resource in result["failures"]:
        print(f"  FAILED  {check_id}  {template}  {resource}")
    for check_id, count in sorted(Counter(s[0] for s in result["skips"]).items()):
        reasons = sorted({s[3] for s in result["skips"] if s[0] == check_id})
        print(f"  skipped {check_id} x{count}: {' | '.join(reasons)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    unexplained = [s for s in result["skips"] if len(s[3].strip()) < 20]
    for check_id, template, resource, _ in unexplained:
        print(f"  NO REASON  {check_id}  {template}  {resource}")
    return 1 if result["failed_percent"] > args.max_failed_percent or unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
