"""Load ``config/<env>.yaml`` into a :class:`PlatformConfig` and turn every mistake into one readable line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from platform_config.schema import PlatformConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


class ConfigError(Exception):
    """A configuration file is missing or invalid. The message names the file, the field, the value and the fix."""


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _value_at(data: Any, loc: tuple[Any, ...]) -> tuple[bool, Any]:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, data


def _format(path: Path, data: Any, err: dict[str, Any]) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
    field = _location(loc)
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    kind = err["type"]
    if kind == "missing":
        return f"{path}: {field}: required field is missing; add it (see README, 'Configuration')"
    if kind == "extra_forbidden":
        return f"{path}: {field}: unknown field; remove it or check its spelling (see README, 'Configuration')"
    found, value = _value_at(data, loc)
    shown = f" = {value!r}" if found and not isinstance(value, (dict, list)) else ""
    return f"{path}: {field}{shown}: {msg}"


def load_config(env: str, config_dir: Path | None = None) -> PlatformConfig:
    """Read and validate ``<config_dir>/<env>.yaml``.

    Raises :class:`ConfigError` with one line per problem; never a traceback for a user's mistake.
    """
    directory = config_dir or CONFIG_DIR
    path = directory / f"{env}.yaml"
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    if not path.is_file():
        choices = sorted(p.stem for p in directory.glob("*.yaml"))
        raise ConfigError(f"{shown}: no such config file; pass -c env=<name> with one of {choices}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{shown}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{shown}: the top level must be a mapping of fields, got {type(data).__name__}")
    if data.get("environment", env) != env:
        raise ConfigError(
            f"{shown}: environment = {data['environment']!r}: must match the file name; set environment: {env}"
        )
    try:
        return PlatformConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(_format(shown, data, e) for e in exc.errors())) from None
