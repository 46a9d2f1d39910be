"""`python -m rehearsal --cdk-out build/rehearse/cdk.out`: rehearse the synthesized platform (see rehearsal.loop)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rehearsal.loop import rehearse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rehearsal", description=__doc__)
    parser.add_argument("--cdk-out", type=Path, required=True,
                        help="a cloud assembly synthesized with -c serving=all (make rehearse does this)")
    parser.add_argument("--report-dir", type=Path, default=Path("build/rehearse/report"))
    parser.add_argument("--sample-rows", type=int, default=None, help="rows of the sample data (default: all)")
    parser.add_argument("--no-second-pass", action="store_true", help="skip the new-data retraining check")
    parser.add_argument("--no-serve", action="store_true", help="stop after the deploy CD's Resolve step")
    args = parser.parse_args(argv)
    started = time.monotonic()
    report = rehearse(
        args.cdk_out,
        report_dir=args.report_dir,
        sample_rows=args.sample_rows,
        second_pass=not args.no_second_pass,
        serve=not args.no_serve,
    )
    took = time.monotonic() - started
    if report.ok:
        print(f"rehearsal passed in {took:.0f} s; report in {args.report_dir}/summary.md")
        return 0
    print(f"rehearsal FAILED in {took:.0f} s: {report.error}\nreport in {args.report_dir}/summary.md", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
