#!/usr/bin/env python3
"""CDK entry point: `cdk synth -c env=<name>` builds every stack of config/<name>.yaml (default: dev).

`-c config_dir=<dir>` reads `<dir>/<name>.yaml` instead (e.g. a fork's configs kept elsewhere, or a test's)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("SAGEMAKER_TELEMETRY_OPT_OUT", "true")

from platform_config import ConfigError, load_config  # noqa: E402


def main(app=None) -> int:
    """Synthesize ``app`` (default: a new ``cdk.App``, which reads the CLI's context)."""
    import aws_cdk as cdk

    app = app or cdk.App()
    env_name = app.node.try_get_context("env") or "dev"
    config_dir = app.node.try_get_context("config_dir")
    config_file = f"{config_dir or 'config'}/{env_name}.yaml"
    try:
        config = load_config(env_name, Path(config_dir) if config_dir else None)
    except ConfigError as exc:
        print(f"Configuration error:\n{exc}", file=sys.stderr)
        return 1
    from stacks.app_builder import build_app

    try:
        build_app(config, app=app).synth()
    except ValueError as exc:  # a construct refused a value: say which, without a jsii stack trace
        print(f"Synth error ({config_file}):\n{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
