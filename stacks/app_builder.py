"""Build the CDK app of one environment. Used by app.py and by the tests (which synthesize it once a session)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from platform_config import PlatformConfig
from stacks.common import tag
from stacks.data_stack import DataStack
from stacks.model_stack import ModelStack
from stacks.serving_stack import ServingStack
from stacks.shared_stack import SharedStack
from stacks.workstation_stack import WorkstationStack

ROOT = Path(__file__).resolve().parent.parent


class EnvironmentStacks:
    """The stacks of one environment in ``scope`` (the App, or a Stage of the platform pipeline).

    Named ``<project>-<environment>-<part>``: shared, data, model-<model>, serving-<model>-<stage> (unless
    ``include_serving`` is False: serving stacks take the approved package as a parameter, which only the model deploy
    pipeline or a person running ``cdk deploy`` can pass), and workstation when the config enables it.
    """

    def __init__(self, scope: Construct, config: PlatformConfig, *, include_serving: bool = True) -> None:
        self.config = config
        env = cdk.Environment(account=config.account, region=config.region) if (
            config.account or config.region
        ) else None
        prefix = config.prefix()
        self.stacks: dict[str, cdk.Stack] = {}

        self.shared = SharedStack(scope, f"{prefix}-shared", config=config, env=env)
        self._register("shared", self.shared)
        self.data = DataStack(scope, f"{prefix}-data", config=config, env=env)
        self._register("data", self.data)

        self.models: dict[str, ModelStack] = {}
        for model in config.models:
            stack = ModelStack(
                scope,
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
        for model in config.models if include_serving else ():
            if not (model.endpoint.enabled or model.lambda_.enabled):
                continue  # nothing to serve
            for stage in model.stages:
                stage_env = (
                    cdk.Environment(account=stage.account or config.account, region=stage.region or config.region)
                    if (stage.account or stage.region)
                    else env
                )
                stack = ServingStack(
                    scope,
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

        if config.workstation.enabled:
            self.workstation = WorkstationStack(
                scope,
                f"{prefix}-workstation",
                config=config,
                lake_refs=self.data.lake_refs,
                pipeline_names=[f"{prefix}-{m.name}" for m in config.models],
                env=env,
            )
            self._register("workstation", self.workstation)

    def _register(self, part: str, stack: cdk.Stack, model: Optional[str] = None) -> None:
        tag(stack, self.config, model)
        self.stacks[part] = stack


class PlatformApp:
    """The app of one environment: its stacks, the platform pipeline when enabled, and the cdk-nag gate."""

    def __init__(self, config: PlatformConfig, *, app: cdk.App, nag: bool = True) -> None:
        self.config = config
        self.app = app
        self.environment = EnvironmentStacks(app, config)
        self.stacks = self.environment.stacks
        if config.platform_pipeline.enabled:
            from stacks.platform_pipeline_stack import PlatformPipelineStack

            env = cdk.Environment(account=config.account, region=config.region) if config.account else None
            self.pipeline = PlatformPipelineStack(
                app,
                f"{config.prefix()}-pipeline",
                config=config,
                build_stacks=lambda stage, env_config: EnvironmentStacks(stage, env_config, include_serving=False),
                env=env,
            )
            tag(self.pipeline, config)
            self.stacks["pipeline"] = self.pipeline
        if nag:
            cdk.Validations.of(self.app).add_plugins(AwsSolutionsChecks(self.app))

    # Kept for callers that used the app-level attributes.
    def __getattr__(self, name: str):
        return getattr(self.environment, name)

    def synth(self) -> cdk.cx_api.CloudAssembly:
        return self.app.synth()


def build_app(
    config: PlatformConfig,
    *,
    app: Optional[cdk.App] = None,
    outdir: Optional[str | Path] = None,
    nag: bool = True,
    extra_context: Optional[dict] = None,
) -> PlatformApp:
    """All stacks of ``config`` in ``app`` (default: a new App writing to ``outdir`` or cdk.out)."""
    if app is None:
        # Same feature flags as `cdk synth` (cdk.json), so tests synthesize exactly what the CLI does.
        context = json.loads((ROOT / "cdk.json").read_text())["context"]
        context["env"] = config.environment
        context.update(extra_context or {})
        app = cdk.App(outdir=str(outdir) if outdir else None, context=context)
    return PlatformApp(config, app=app, nag=nag)
