"""``python -m demo`` (``make demo``): the platform loop on this machine against a local AWS stand-in.

Stages: 1 stand-in AWS (embedded moto server on 127.0.0.1, fake credentials), 2 raw upload, 3 Glue ETL transform on
local PySpark, 4 model build (the SageMaker pipeline's scripts and condition) and registration, 5 approval and the
deploy pipeline's resolver, 6 the inference Lambda behind a local Function URL, called over HTTP, 7 report.

Exit codes: 0 success; 1 the model failed the registration condition (see --threshold) or a request was answered
unexpectedly; 2 refused (non-loopback endpoint, real credentials) or invalid arguments/config; 3 any other failure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="dev", help="config/<env>.yaml to read (default: dev)")
    parser.add_argument("--sample", type=_positive_int, default=None, metavar="N",
                        help="use only the first N rows of data/abalone.csv (a faster run)")
    parser.add_argument("--report-dir", type=Path, default=Path("demo-report"),
                        help="where metrics.json, the plot and summary.md go (default: demo-report/)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="override the model's registration threshold from the config (e.g. 0.01 for rmse "
                             "shows the Fail path)")
    parser.add_argument("--model", default=None, help="model name in the config (default: the first one)")
    parser.add_argument("--endpoint-url", default=None,
                        help="use an already running stand-in (e.g. 'moto_server' on http://127.0.0.1:5000) "
                             "instead of the embedded one; must be a loopback address")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from demo.loop import DemoFailed, UnsafeEnvironmentError, run_demo
    from platform_config import ConfigError

    started = time.perf_counter()
    try:
        result = run_demo(args.env, sample=args.sample, report_dir=args.report_dir, threshold=args.threshold,
                          model_name=args.model, endpoint_url=args.endpoint_url)
    except UnsafeEnvironmentError as exc:
        print(f"REFUSED: {exc}", file=sys.stderr, flush=True)
        return 2
    except (ConfigError, ValueError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr, flush=True)
        return 2
    except DemoFailed as exc:
        print(f"\nSTOPPED: {exc}", file=sys.stderr, flush=True)
        if exc.result.report_files:
            print(f"Report of the failed run: {exc.result.report_dir}/summary.md", file=sys.stderr, flush=True)
        return 1
    except Exception as exc:  # a step failed: say which, without a wall of traceback
        print(f"\nFAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 3
    elapsed = time.perf_counter() - started
    bad = [r.name for r in result.requests if not r.ok]
    print(f"\nDone in {elapsed:.1f} s: {result.metric}={result.metric_value:.4f} (threshold "
          f"{result.threshold:g}), package {result.package_arn} {result.package_status}, "
          f"{sum(r.ok for r in result.requests)}/{len(result.requests)} HTTP checks as expected.")
    print(f"Report: {result.report_dir}/summary.md", flush=True)
    if bad:
        print(f"Unexpected HTTP answers: {', '.join(bad)}", file=sys.stderr, flush=True)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
