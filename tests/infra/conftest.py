"""Synthesize each environment's app ONCE per test session; every infrastructure test reads these templates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from platform_config import PlatformConfig, load_config


@dataclass
class Synthesized:
    config: PlatformConfig
    outdir: Path
    templates: dict[str, dict]  # stack name -> template
    stacks: dict  # part -> cdk.Stack

    def template(self, part: str) -> dict:
        return self.templates[self.stacks[part].stack_name]

    def assertions(self, part: str):
        from aws_cdk.assertions import Template

        return Template.from_json(self.template(part))

    def resources(self, part: str, cfn_type: str) -> dict[str, dict]:
        return {k: v for k, v in self.template(part)["Resources"].items() if v["Type"] == cfn_type}

    def all_resources(self, cfn_type: str) -> dict[str, dict]:
        out = {}
        for name, tpl in self.templates.items():
            out.update({f"{name}/{k}": v for k, v in tpl["Resources"].items() if v["Type"] == cfn_type})
        return out


def _synth(env: str, outdir: Path) -> Synthesized:
    from stacks.app_builder import build_app

    config = load_config(env)
    # Reference assets in place: the templates are the same, without copying the ~90 MB Lambda layer per synth.
    platform = build_app(config, outdir=outdir, extra_context={"aws:cdk:disable-asset-staging": True, "serving": "all"})
    try:
        assembly = platform.synth()
    except RuntimeError as exc:  # cdk-nag findings fail synthesis: show the report, not just "ValidationFailed"
        report = outdir / "validation-report.json"
        detail = report.read_text() if report.exists() else ""
        raise AssertionError(f"synth of {env} failed: {exc}\n{detail}") from None
    templates = {s.stack_name: json.loads(Path(s.template_full_path).read_text()) for s in assembly.stacks}
    return Synthesized(config=config, outdir=outdir, templates=templates, stacks=platform.stacks)


@pytest.fixture(scope="session")
def dev(tmp_path_factory) -> Synthesized:
    return _synth("dev", tmp_path_factory.mktemp("cdk-dev"))


@pytest.fixture(scope="session")
def prod(tmp_path_factory) -> Synthesized:
    return _synth("prod", tmp_path_factory.mktemp("cdk-prod"))


@pytest.fixture(scope="session", params=["dev", "prod"])
def synthesized(request) -> Synthesized:
    return request.getfixturevalue(request.param)
