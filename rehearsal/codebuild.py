"""CodeBuild in the rehearsal: run a CodePipeline action's build as CodeBuild would, from the synthesized templates.

For an action of a synthesized ``AWS::CodePipeline::Pipeline``:
- the project is the ``AWS::CodeBuild::Project`` the action names; its buildspec is the project's inline
  ``Source.BuildSpec`` (what the template deploys, not the file in ``buildspecs/``);
- the environment is the project's ``Environment.EnvironmentVariables`` overlaid by the action's
  ``Configuration.EnvironmentVariables``, with ``#{Namespace.VARIABLE}`` references replaced by the values earlier
  actions exported (as CodePipeline resolves them), plus ``CODEBUILD_SRC_DIR`` and ``CODEBUILD_SRC_DIR_<artifact>``
  for secondary inputs;
- the credentials are the project's ``ServiceRole`` (through :meth:`Cloud.environ`), so every AWS call of the
  build is authorized against that role's policies;
- the ``build`` phase's commands run in one bash session in a copy of the source (CodeBuild runs the commands of a
  phase in order, in one shell, and stops the phase at the first failure); ``exported-variables`` are read from the
  shell's environment when the phase ends; ``artifacts.files`` are collected.

Not emulated: the ``install`` phase (runtime provisioning and package installs: the rehearsal runs with the project's
pinned virtualenv, which is what those commands install), reports, caching, VPC settings. Two command-line tools are
stand-ins (see :mod:`rehearsal.cli_standins`): ``cdk`` (``npx cdk deploy``: validates the stack selection, context
and parameters against the assembly and hands the deployment to the rehearsal) and ``aws`` (the few subcommands the
buildspecs use, made with boto3 under the build's credentials).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from rehearsal.assembly import RehearsalError, Stack
from rehearsal.context import Rehearsal, clean_env

REPO = Path(__file__).resolve().parent.parent


@dataclass
class BuildResult:
    action: str
    exit_code: int
    exported: dict[str, str]
    output: str
    workdir: Path
    artifacts: list[Path] = field(default_factory=list)
    deploy_requests: list[dict] = field(default_factory=list)

    def check(self) -> "BuildResult":
        if self.exit_code != 0:
            tail = "\n".join(self.output.strip().splitlines()[-25:])
            raise RehearsalError(f"CodeBuild action {self.action} failed (exit {self.exit_code}):\n{tail}")
        return self


@dataclass(frozen=True)
class PipelineAction:
    stage: str
    name: str
    project_logical: str
    environment: list[dict]
    namespace: Optional[str]
    input_artifacts: list[str]


def find_action(rh: Rehearsal, stack: Stack, action_name: str, pipeline_contains: str = "") -> PipelineAction:
    """The CodeBuild action of the stack's pipeline in the stage (or with the name) ``action_name``, e.g. ``Resolve``,
    ``Deploy-staging``."""
    resolver = rh.assembly.resolver
    projects = {resolver.name(stack, k): k for k in stack.of_type("AWS::CodeBuild::Project")}
    for logical, res in stack.of_type("AWS::CodePipeline::Pipeline").items():
        if pipeline_contains not in logical:
            continue
        for stage in res["Properties"]["Stages"]:
            for action in stage["Actions"]:
                if action_name not in (action["Name"], stage["Name"]) or action["ActionTypeId"]["Provider"] != "CodeBuild":
                    continue
                config = resolver.resolve(stack, action["Configuration"])
                project = config["ProjectName"]
                if project not in projects:
                    raise RehearsalError(f"{stack.name}: action {action_name} names project {project}, not in the stack")
                env = json.loads(config.get("EnvironmentVariables", "[]"))
                return PipelineAction(
                    stage=stage["Name"],
                    name=action_name,
                    project_logical=projects[project],
                    environment=env,
                    namespace=action.get("Namespace"),
                    input_artifacts=[a["Name"] for a in action.get("InputArtifacts", [])],
                )
    raise RehearsalError(f"{stack.name}: no CodeBuild action named {action_name!r}")


def substitute(value: str, variables: Mapping[str, Mapping[str, str]]) -> str:
    """Replace ``#{Namespace.NAME}`` as CodePipeline does; an unknown reference fails as the pipeline would."""

    def repl(match: re.Match) -> str:
        ns, name = match.group(1), match.group(2)
        if ns not in variables or name not in variables[ns]:
            raise RehearsalError(f"pipeline variable #{{{ns}.{name}}} is not exported by any earlier action")
        return variables[ns][name]

    return re.sub(r"#\{([A-Za-z0-9@\-_]+)\.([A-Za-z0-9@\-_]+)\}", repl, value)


def source_copy(target: Path) -> Path:
    """The source artifact: the repository's tracked files at this commit (what the pipeline's source stage gives)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            dst = target / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    venv = REPO / ".venv"
    if venv.exists() and not (target / ".venv").exists():
        (target / ".venv").symlink_to(venv)  # what the install phase's `make install` creates
    return target


def _shims(rh: Rehearsal, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    python = rh.python
    for name, body in {
        "python": f'#!/bin/sh\nexec "{python}" "$@"\n',
        "python3": f'#!/bin/sh\nexec "{python}" "$@"\n',
        "npx": f'#!/bin/sh\nPYTHONPATH="{REPO}"; export PYTHONPATH; exec "{python}" -P -m rehearsal.cli_standins npx "$@"\n',
        "cdk": f'#!/bin/sh\nPYTHONPATH="{REPO}"; export PYTHONPATH; exec "{python}" -P -m rehearsal.cli_standins cdk "$@"\n',
        "aws": f'#!/bin/sh\nPYTHONPATH="{REPO}"; export PYTHONPATH; exec "{python}" -P -m rehearsal.cli_standins aws "$@"\n',
    }.items():
        path = directory / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC | stat.S_IXGRP | stat.S_IXOTH)
    return directory


def run_action(
    rh: Rehearsal,
    stack: Stack,
    action_name: str,
    *,
    variables: Optional[dict[str, dict[str, str]]] = None,
    secondary: Optional[Mapping[str, Path]] = None,
    extra_env: Optional[Mapping[str, str]] = None,
    pipeline_contains: str = "",
) -> BuildResult:
    """Run one CodeBuild action; its exported variables are added to ``variables`` under the action's namespace."""
    variables = variables if variables is not None else {}
    action = find_action(rh, stack, action_name, pipeline_contains)
    resolver = rh.assembly.resolver
    project = resolver.resolve(stack, stack.resources[action.project_logical]["Properties"])
    spec_text = project["Source"].get("BuildSpec")
    if not spec_text:
        raise RehearsalError(f"{stack.name}/{action.project_logical}: no inline buildspec")
    spec = yaml.safe_load(spec_text) if isinstance(spec_text, str) else spec_text
    role_arn = project["ServiceRole"]
    if not role_arn.startswith("arn:"):
        role_arn = f"arn:aws:iam::{rh.assembly.resolver.ref(stack, 'AWS::AccountId')}:role/{role_arn}"

    work = rh.scratch(f"codebuild-{action_name}")
    src = source_copy(work / "src")
    shims = _shims(rh, work / "bin")
    env = clean_env(rh.cloud.environ(role_arn))
    env["PATH"] = f"{shims}:{env.get('PATH', '/usr/bin:/bin')}"
    for var in project.get("Environment", {}).get("EnvironmentVariables", []):
        if var.get("Type", "PLAINTEXT") == "PLAINTEXT":
            env[var["Name"]] = str(var["Value"])
    for name, value in (spec.get("env", {}).get("variables") or {}).items():
        env[name] = str(value)
    for var in action.environment:
        if var.get("type", "PLAINTEXT") == "PLAINTEXT":
            env[var["name"]] = substitute(str(var["value"]), variables)
    env["CODEBUILD_SRC_DIR"] = str(src)
    for name, path in (secondary or {}).items():
        env[f"CODEBUILD_SRC_DIR_{name}"] = str(path)
    env["CODEBUILD_BUILD_ID"] = f"{project['Name'] if 'Name' in project else action_name}:rehearsal"
    requests_file = work / "deploy-requests.jsonl"
    env["REHEARSAL_DEPLOY_REQUESTS"] = str(requests_file)
    env["REHEARSAL_CDK_OUT"] = str(rh.assembly.outdir)
    env["REHEARSAL_ATTRIBUTES"] = json.dumps(
        [[k[0], k[1], k[2], v] for k, v in rh.assembly.resolver.attributes.items()]
    )
    env.update(extra_env or {})

    exported_file = work / "exported.env"
    commands = (spec.get("phases", {}).get("build") or {}).get("commands") or []
    script = ["#!/bin/bash", f'trap \'env -0 > "{exported_file}"\' EXIT', f'cd "{src}"']
    for command in commands:
        script.append(command if command.endswith("\n") else command + "\n")
        script.append("__rc=$?; if [ $__rc -ne 0 ]; then exit $__rc; fi")
    script_path = work / "build.sh"
    script_path.write_text("\n".join(script) + "\n")
    proc = subprocess.run(
        ["bash", str(script_path)], cwd=src, env=env, capture_output=True, text=True, timeout=900
    )
    output = proc.stdout + proc.stderr
    exported: dict[str, str] = {}
    if exported_file.exists():
        shell_env = dict(
            item.split("=", 1) for item in exported_file.read_text().split("\0") if "=" in item
        )
        for name in spec.get("env", {}).get("exported-variables", []) or []:
            if name in shell_env:
                exported[name] = shell_env[name]
    if action.namespace:
        variables[action.namespace] = exported
    artifacts = []
    for pattern in (spec.get("artifacts") or {}).get("files", []) or []:
        artifacts.extend(sorted(src.glob(pattern)))
    deploys = [json.loads(line) for line in requests_file.read_text().splitlines()] if requests_file.exists() else []
    rh.log(f"  CodeBuild {action.stage}/{action_name}: exit {proc.returncode}, exported {sorted(exported)}")
    return BuildResult(action_name, proc.returncode, exported, output, src, artifacts, deploys)
