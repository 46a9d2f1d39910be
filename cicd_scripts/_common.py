"""What the CI/CD scripts share: argument parsing that never exits the interpreter, errors with exit codes, clients."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3

# Standard retry mode: throttling and transient errors are retried with backoff inside botocore.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8}, user_agent_extra="mlops-cicd-scripts")


class ScriptError(Exception):
    """A failure the user can act on. ``str(exc)`` is the whole message; ``exit_code`` is what ``main`` returns."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(ScriptError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


class _ParserExit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse`` parser that raises instead of calling ``sys.exit`` (``--help`` and errors alike)."""

    def exit(self, status: int = 0, message: Optional[str] = None) -> None:  # type: ignore[override]
        if message:
            sys.stderr.write(message)
        raise _ParserExit(status)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def log(message: str) -> None:
    """Progress for the build log (stderr, so stdout carries only results)."""
    print(message, file=sys.stderr, flush=True)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)


def run(parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int], argv: Optional[Sequence[str]]) -> int:
    """Parse ``argv``, run ``body`` and turn every expected failure into a one-line message and an exit code."""
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
        return body(args)
    except _ParserExit as exc:
        return exc.status
    except ScriptError as exc:
        print(f"ERROR: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except NoCredentialsError:
        print("ERROR: no AWS credentials found; CodeBuild provides its service role's, locally set AWS_PROFILE",
              file=sys.stderr, flush=True)
        return EXIT_FAILED
    except NoRegionError:
        print("ERROR: no AWS region configured; set AWS_REGION (CodeBuild sets it) or pass --region",
              file=sys.stderr, flush=True)
        return EXIT_FAILED
    except ClientError as exc:
        op = exc.operation_name or "AWS call"
        print(f"ERROR: {op} failed: {error_code(exc)}: {error_message(exc)}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except BotoCoreError as exc:
        print(f"ERROR: AWS SDK error: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED


def client(service: str, region: Optional[str] = None) -> Any:
    return boto3.session.Session(region_name=region).client(service, config=CLIENT_CONFIG)


def read_json_file(path: str, what: str) -> Any:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what} '{path}' does not exist")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} '{path}' is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")


def write_json_file(path: str, data: Any) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_env_file(path: str, values: Mapping[str, Any]) -> None:
    """``export KEY='value'`` lines: ``. ./file`` in a buildspec exports them (None becomes an empty string)."""
    lines = [f"export {key}={shlex.quote('' if value is None else str(value))}" for key, value in values.items()]
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")


def env(name: str) -> Optional[str]:
    value = os.environ.get(name, "").strip()
    return value or None
