"""``python -m demo`` (``make demo``): the platform loop on this machine against a local AWS stand-in, for every
model of the config (``--model NAME``: one), each on its own dataset.

Stages: 1 stand-in AWS (embedded moto server on 127.0.0.1, fake credentials); per model: 2 raw upload of its
dataset, 3 Glue ETL transform with the dataset's schema on local PySpark, 4 model build (the SageMaker pipeline's
scripts and condition) and registration, 5 approval and the deploy pipeline's resolver, 6 serving as the config
serves the model (the inference Lambda behind a local Function URL, called over HTTP; the endpoint's handlers where
the endpoint is enabled); 7 report.

Exit codes: 0 success; 1 a model failed the registration condition (see --threshold) or a request was answered
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
                        help="use only N rows of each dataset's data/<dataset>.csv (a faster run; a binary "
                             "target keeps both classes)")
    parser.add_argument("--report-dir", type=Path, default=Path("demo-report"),
                        help="where metrics.json, the plot and summary.md go (default: demo-report/)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="override the registration threshold of the --model from the config (e.g. "
                             "--model abalone --threshold 0.01, an impossible rmse, shows the Fail path)")
    parser.add_argument("--model", default=None, metavar="NAME",
                        help="run the loop for this model of the config only (default: every model)")
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
    print(f"\nDone in {elapsed:.1f} s, {len(result.models)} model(s):")
    for model in result.models:
        checks = (f", {sum(r.ok for r in model.requests)}/{len(model.requests)} HTTP checks as expected"
                  if model.requests else "")
        print(f"  {model.model} ({model.dataset}): {model.metric}={model.metric_value:.4f} (threshold "
              f"{model.threshold:g}), package {model.package_arn} {model.package_status}{checks}")
    print(f"Report: {result.report_dir}/summary.md", flush=True)
    bad = [f"{m.model}: {r.name}" for m in result.models for r in m.requests if not r.ok]
    if bad:
        print(f"Unexpected HTTP answers: {', '.join(bad)}", file=sys.stderr, flush=True)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
