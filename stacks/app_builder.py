"""Build the CDK app of one environment. Used by app.py and by the tests (which synthesize it once a session)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from platform_config import PlatformConfig
from stacks.common import tag
from stacks.data_stack import DataStack
from stacks.model_stack import ModelStack
from stacks.serving_stack import ServingStack
from stacks.shared_stack import SharedStack

ROOT = Path(__file__).resolve().parent.parent


class PlatformApp:
    """The stacks of one environment, named ``<project>-<environment>-<part>``."""

    def __init__(self, config: PlatformConfig, *, app: cdk.App, nag: bool = True) -> None:
        self.config = config
        self.app = app
        env = cdk.Environment(account=config.account, region=config.region) if (
            config.account or config.region
        ) else None
        prefix = config.prefix()
        self.stacks: dict[str, cdk.Stack] = {}

        self.shared = SharedStack(self.app, f"{prefix}-shared", config=config, env=env)
        self._register("shared", self.shared)
        self.data = DataStack(self.app, f"{prefix}-data", config=config, env=env)
        self._register("data", self.data)

        self.models: dict[str, ModelStack] = {}
        for model in config.models:
            stack = ModelStack(
                self.app,
                f"{prefix}-model-{model.name}",
                config=config,
                model=model,
                lake_refs=self.data.lake_refs,
                shared=self.shared,
                env=env,
            )
            self._register(f"model-{model.name}", stack, model.name)
            self.models[model.name] = stack

        self.serving: dict[tuple[str, str], ServingStack] = {}
        for model in config.models:
            if not (model.endpoint.enabled or model.lambda_.enabled):
                continue  # nothing to serve
            for stage in model.stages:
                stage_env = (
                    cdk.Environment(account=stage.account or config.account, region=stage.region or config.region)
                    if (stage.account or stage.region)
                    else env
                )
                stack = ServingStack(
                    self.app,
                    f"{prefix}-serving-{model.name}-{stage.name}",
                    config=config,
                    model=model,
                    stage=stage,
                    lake_refs=self.data.lake_refs,
                    shared=self.shared,
                    env=stage_env,
                )
                self._register(f"serving-{model.name}-{stage.name}", stack, model.name)
                self.serving[(model.name, stage.name)] = stack

        if nag:
            cdk.Validations.of(self.app).add_plugins(AwsSolutionsChecks(self.app))

    def _register(self, part: str, stack: cdk.Stack, model: Optional[str] = None) -> None:
        tag(stack, self.config, model)
        self.stacks[part] = stack

    def synth(self) -> cdk.cx_api.CloudAssembly:
        return self.app.synth()


def build_app(
    config: PlatformConfig, *, app: Optional[cdk.App] = None, outdir: Optional[str | Path] = None, nag: bool = True
) -> PlatformApp:
    """All stacks of ``config`` in ``app`` (default: a new App writing to ``outdir`` or cdk.out)."""
    if app is None:
        # Same feature flags as `cdk synth` (cdk.json), so tests synthesize exactly what the CLI does.
        context = json.loads((ROOT / "cdk.json").read_text())["context"]
        context["env"] = config.environment
        app = cdk.App(outdir=str(outdir) if outdir else None, context=context)
    return PlatformApp(config, app=app, nag=nag)
