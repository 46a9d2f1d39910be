"""Build the CDK app of one environment. Used by app.py and by the tests (which synthesize it once a session)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from mlops_constructs.permissions import BoundaryPolicy, apply_role_rules
from platform_config import PlatformConfig
from platform_config.names import SERVING_CONTEXT
from stacks.common import LakeReferences, tag
from stacks.data_stack import DataStack
from stacks.model_stack import ModelStack, model_resource_name
from stacks.serving_stack import ServingStack
from stacks.shared_stack import SharedStack
from stacks.workstation_stack import WorkstationStack

ROOT = Path(__file__).resolve().parent.parent


def serving_selection(value: object, config: PlatformConfig) -> set[tuple[str, str]]:
    """The (model, stage) pairs the ``serving`` context asks for; ``ValueError`` naming the bad entry.

    Serving stacks take the approved model package as a parameter, so they exist only when asked for: the model
    deploy pipeline synthesizes exactly the one it deploys (``-c serving=<model>/<stage>``); tests and the rehearsal
    ask for ``all``. Without the context, ``cdk deploy --all`` deploys every stack that can exist before the first
    approval and needs no parameter.
    """
    available = {
        (m.name, s.name) for m in config.models if m.endpoint.enabled or m.lambda_.enabled for s in m.stages
    }
    if value in (None, "", False):
        return set()
    if value is True or value == "all":
        return available
    chosen: set[tuple[str, str]] = set()
    for item in str(value).split(","):
        model, _, stage = item.strip().partition("/")  # Names.serving_context's form
        if (model, stage) not in available:
            names = ", ".join(f"{m}/{s}" for m, s in sorted(available)) or "none"
            raise ValueError(
                f"-c {SERVING_CONTEXT}={value}: '{item.strip()}' is not a served model/stage of "
                f"config/{config.environment}.yaml; use 'all' or one of: {names}"
            )
        chosen.add((model, stage))
    return chosen


def stack_environment(config: PlatformConfig) -> Optional[cdk.Environment]:
    """The environment of the config's stacks, or None (environment-agnostic) when it names no account/region."""
    if config.account or config.region:
        return cdk.Environment(account=config.account, region=config.region)
    return None


def apply_iam_rules(
    stack: cdk.Stack, config: PlatformConfig, *, shared: Optional[SharedStack] = None, own_boundary: bool = False
) -> None:
    """The config's ``iam`` rules on every role of ``stack``: ``permissions_boundary`` and ``role_path``.

    ``create``: the shared stack's own boundary policy in the shared stack; in the environment's other stacks, the
    policy's ARN imported by its export name (``Names.boundary_export``), after the shared stack when it is in the
    same app or stage; with ``own_boundary``, a :class:`BoundaryPolicy` of the stack's own under the same path (the
    platform pipeline stack: it is deployed before any of its stages creates the shared stack). Nothing set: the
    stack is left as it is.
    """
    settings = config.iam
    boundary: Optional[iam.IManagedPolicy] = None
    if settings.permissions_boundary == "create":
        if shared is not None and stack is shared:
            boundary = shared.boundary.policy
        elif own_boundary:
            boundary = BoundaryPolicy(stack, "PermissionsBoundary", path=config.names.boundary_path).policy
        else:
            arn = cdk.Fn.import_value(config.names.boundary_export)
            boundary = iam.ManagedPolicy.from_managed_policy_arn(stack, "PermissionsBoundaryImport", arn)
            if shared is not None:
                stack.add_stack_dependency(shared, "imports the permissions boundary")
    elif settings.permissions_boundary is not None:
        boundary = iam.ManagedPolicy.from_managed_policy_arn(
            stack, "PermissionsBoundaryImport", settings.permissions_boundary
        )
    apply_role_rules(stack, boundary=boundary, role_path=settings.role_path)


class EnvironmentStacks:
    """The stacks of one environment in ``scope`` (the App, or a Stage of the platform pipeline).

    Named ``<project>-<environment>-<part>`` (the same CloudFormation stack name in the App and in a pipeline Stage):
    shared, data, model-<model>, workstation when the config enables it, and the serving-<model>-<stage> stacks
    listed in ``serving`` (see :func:`serving_selection`).
    """

    def __init__(
        self,
        scope: Construct,
        config: PlatformConfig,
        *,
        serving: Iterable[tuple[str, str]] = (),
        core: bool = True,
    ) -> None:
        self.config = config
        env = stack_environment(config)
        self.stacks: dict[str, cdk.Stack] = {}
        self.serving: dict[tuple[str, str], ServingStack] = {}
        self.models: dict[str, ModelStack] = {}
        serving = set(serving)
        if not core:
            # Serving stacks alone (the platform pipeline owns the environment's other stacks): they reach the lake
            # and the alarm topic through the environment's named exports.
            self._serving(scope, config, serving, LakeReferences.imported(config.names), None, env)
            return

        names = config.names
        self.shared = SharedStack(scope, names.stack("shared"), config=config, env=env, stack_name=names.stack("shared"))
        self._register("shared", self.shared)
        self.data = DataStack(
            scope, names.stack("data"), config=config, shared=self.shared, env=env, stack_name=names.stack("data")
        )
        self._register("data", self.data)

        for model in config.models:
            name = names.model_stack(model.name)
            stack = ModelStack(
                scope,
                name,
                config=config,
                model=model,
                lake_refs=self.data.lake_refs,
                shared=self.shared,
                env=env,
                stack_name=name,
            )
            self._register(f"model-{model.name}", stack, model.name)
            self.models[model.name] = stack

        self._serving(scope, config, serving, self.data.lake_refs, self.shared, env)

        if config.workstation.enabled:
            self.workstation = WorkstationStack(
                scope,
                names.stack("workstation"),
                config=config,
                lake_refs=self.data.lake_refs,
                pipeline_names=[model_resource_name(config, m) for m in config.models],
                env=env,
                stack_name=names.stack("workstation"),
            )
            self._register("workstation", self.workstation)

    def _serving(self, scope, config, serving, lake_refs, shared, env) -> None:
        for model in config.models:
            for stage in model.stages:
                if (model.name, stage.name) not in serving:
                    continue
                stage_env = (
                    cdk.Environment(account=stage.account or config.account, region=stage.region or config.region)
                    if (stage.account or stage.region)
                    else env
                )
                name = config.names.serving_stack(model.name, stage.name)
                stack = ServingStack(
                    scope,
                    name,
                    config=config,
                    model=model,
                    stage=stage,
                    lake_refs=lake_refs,
                    shared=shared,
                    env=stage_env,
                    stack_name=name,
                )
                self._register(f"serving-{model.name}-{stage.name}", stack, model.name)
                self.serving[(model.name, stage.name)] = stack

    def _register(self, part: str, stack: cdk.Stack, model: Optional[str] = None) -> None:
        tag(stack, self.config, model)
        apply_iam_rules(stack, self.config, shared=getattr(self, "shared", None))
        self.stacks[part] = stack


class PlatformApp:
    """The app of one environment: its stacks, the platform pipeline when enabled, and the cdk-nag gate.

    One owner per environment: without the platform pipeline the App holds the environment's stacks; with it, the
    pipeline's Stages own them (every environment in ``platform_pipeline.environments``) and the App holds only the
    pipeline stack, plus the serving stacks the ``serving`` context asks for (the model deploy pipeline deploys those
    with the approved package; they import the environment's exports by name).
    """

    def __init__(self, config: PlatformConfig, *, app: cdk.App, nag: bool = True) -> None:
        self.config = config
        self.app = app
        serving = serving_selection(app.node.try_get_context(SERVING_CONTEXT), config)
        pipeline_enabled = config.platform_pipeline.enabled
        self.environment = EnvironmentStacks(app, config, serving=serving, core=not pipeline_enabled)
        self.stacks = self.environment.stacks
        if pipeline_enabled:
            from stacks.platform_pipeline_stack import PlatformPipelineStack

            from platform_config import load_config

            name = config.names.stack("pipeline")
            # The pipeline's own environment is this config (as loaded, overrides included); the others their files
            # (in the directory `-c config_dir=<dir>` names, as app.py reads it; default config/).
            config_dir = app.node.try_get_context("config_dir")
            config_dir = Path(config_dir) if config_dir else None
            environment_configs = [
                config if env_name == config.environment else load_config(env_name, config_dir)
                for env_name in config.platform_pipeline.environments
            ]
            self.pipeline = PlatformPipelineStack(
                app,
                name,
                config=config,
                environment_configs=environment_configs,
                build_stacks=lambda stage, env_config: EnvironmentStacks(stage, env_config),
                env=stack_environment(config),
                stack_name=name,
            )
            tag(self.pipeline, config)
            apply_iam_rules(self.pipeline, config, own_boundary=True)
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
