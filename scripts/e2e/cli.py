"""The command line of the e2e run: ``python -m scripts.e2e`` (``make e2e``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import boto3

from cicd_scripts._common import EXIT_USAGE
from scripts.e2e.common import DEFAULT_DATA, TEARDOWN_MODES, E2EError
from scripts.e2e.report import Options
from scripts.e2e.run import E2ERun

DESCRIPTION = ("End-to-end run of the platform against a sandbox AWS account: deploy, feed, build, approve, serve, "
               "report, tear down.")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.e2e", description=DESCRIPTION)
    p.add_argument("--env", required=True, help="config/<env>.yaml to deploy (a sandbox environment)")
    p.add_argument("--yes", action="store_true", help="go ahead: deploy, run (billed), approve, tear down")
    p.add_argument("--teardown", choices=TEARDOWN_MODES, default="stacks",
                   help="after the run: none, stacks (cdk destroy; default) or all (also the retained resources)")
    p.add_argument("--teardown-only", choices=("stacks", "all"),
                   help="only tear down an earlier run's environment (no deploy)")
    p.add_argument("--timeout-minutes", type=float, default=90.0, help="bound of each wait (default 90)")
    p.add_argument("--report-dir", type=Path, default=Path("e2e-report"))
    p.add_argument("--keep-on-failure", action="store_true", help="no teardown when a stage fails")
    p.add_argument("--allow-prod", action="store_true", help="run on an environment named like production")
    p.add_argument("--model", help="the model to follow (default: the config's first)")
    p.add_argument("--region", help="default: the config's region, else the credentials' region")
    p.add_argument("--rows", type=int, default=5, help="sample rows sent to staging (default 5)")
    p.add_argument("--data-file", type=Path, default=DEFAULT_DATA)
    return p


def main(argv: Optional[Sequence[str]] = None, **overrides: Any) -> int:
    """CLI entry point; ``overrides`` (session_factory, run_cdk, clock, sleep, say, config) are for tests."""
    args = _parser().parse_args(argv)
    if args.rows < 1 or args.timeout_minutes <= 0:
        print("ERROR: --rows and --timeout-minutes must be positive", file=sys.stderr)
        return EXIT_USAGE
    config = overrides.pop("config", None)
    if config is None:
        from platform_config import ConfigError, load_config

        try:
            config = load_config(args.env)
        except ConfigError as exc:
            print(f"Configuration error:\n{exc}", file=sys.stderr)
            return EXIT_USAGE
    options = Options(
        env=args.env, yes=args.yes, teardown=args.teardown, timeout_minutes=args.timeout_minutes,
        report_dir=args.report_dir, keep_on_failure=args.keep_on_failure, allow_prod=args.allow_prod,
        model=args.model, region=args.region, rows=args.rows, data_file=args.data_file,
    )
    overrides.setdefault("session_factory", lambda: boto3.session.Session(region_name=args.region))
    try:
        run = E2ERun(options, config, **overrides)
    except E2EError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.teardown_only:
        return run.teardown_only(args.teardown_only)
    return run.run()
