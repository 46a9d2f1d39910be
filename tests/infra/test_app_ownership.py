"""One owner per environment, and a first `cdk deploy --all` that needs no parameter.

- Without the ``serving`` context the app has no serving stack, and every parameter of every stack has a default.
- ``-c serving=<model>/<stage>`` selects exactly that serving stack; a wrong value fails with one line.
- With the workstation and the platform pipeline enabled, no export name and no fixed physical name is defined twice
  in the synthesized app (top level and pipeline Stages together), for every config in ``config/``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from platform_config import load_config
from stacks.app_builder import build_app, serving_selection

CONFIGS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "config").glob("*.yaml"))

# Name properties that are not account-wide names (scoped to their parent, or not names of resources at all).
NOT_PHYSICAL_NAMES = {
    "PolicyName",  # inline policy of one role
    "MetricName", "AttributeName", "IndexName", "StageName", "VariantName", "ContainerName",
    "ComparisonOperator", "AliasName",  # a Lambda alias is scoped to its function
    "TableName",  # a Glue table within the stack's own database
    "DatabaseName",  # the parent database a Glue table/crawler refers to, not a new name
    "SecurityConfigurationName",  # reference from a crawler/job to a configuration defined elsewhere
    "TopicName", "DisplayName",
    "DeploymentConfigName",  # a reference to a predefined CodeDeploy configuration
}
# (type, property) pairs whose name is scoped to a parent resource.
SCOPED_NAMES = {("AWS::Lambda::Alias", "Name")}


def _stacks(assembly):
    """Every stack artifact of the assembly, nested Stage assemblies included."""
    out = list(assembly.stacks)
    for nested in assembly.nested_assemblies:
        out.extend(_stacks(nested.nested_assembly))
    return out


def _is_literal(value) -> bool:
    """A name fixed at synth: a string, or a join of strings and pseudo parameters (no resource reference)."""
    text = json.dumps(value)
    return '"Fn::GetAtt"' not in text and '"Fn::ImportValue"' not in text and not any(
        ref not in ("AWS::AccountId", "AWS::Region", "AWS::Partition", "AWS::URLSuffix", "AWS::StackName")
        for ref in _refs(value)
    )


def _refs(value):
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


def _names(templates: dict[str, dict]):
    exports, physical = defaultdict(list), defaultdict(list)
    for stack, tpl in templates.items():
        for out_id, out in tpl.get("Outputs", {}).items():
            if "Export" in out:
                exports[json.dumps(out["Export"]["Name"], sort_keys=True)].append(f"{stack}/{out_id}")
        for logical, res in tpl.get("Resources", {}).items():
            for key, value in (res.get("Properties") or {}).items():
                if (
                    key.endswith("Name")
                    and key not in NOT_PHYSICAL_NAMES
                    and (res["Type"], key) not in SCOPED_NAMES
                    and _is_literal(value)
                ):
                    if '"AWS::StackName"' in json.dumps(value):
                        continue  # unique per stack by construction
                    physical[(res["Type"], key, json.dumps(value, sort_keys=True))].append(f"{stack}/{logical}")
    return exports, physical


@pytest.fixture(scope="module")
def default_app(tmp_path_factory):
    cfg = load_config("dev")
    return build_app(cfg, outdir=tmp_path_factory.mktemp("cdk-default"), nag=False).synth()


def test_default_synth_has_no_serving_stack_and_needs_no_parameter(default_app):
    names = sorted(s.stack_name for s in default_app.stacks)
    # One model stack per model of the config (abalone, breast-cancer), no serving stack.
    assert names == ["mlops-dev-data", "mlops-dev-model-abalone", "mlops-dev-model-breast-cancer",
                     "mlops-dev-shared"], names
    cfg = load_config("dev")
    assert names == sorted([cfg.names.stack("data"), cfg.names.stack("shared"),
                            *(cfg.names.model_stack(m.name) for m in cfg.models)])
    for stack in default_app.stacks:
        for name, param in stack.template.get("Parameters", {}).items():
            assert "Default" in param, f"{stack.stack_name} parameter {name} has no default: cdk deploy --all needs it"


@pytest.mark.parametrize("selection, stack", [
    ("abalone/staging", "mlops-dev-serving-abalone-staging"),
    ("breast-cancer/prod", "mlops-dev-serving-breast-cancer-prod"),  # Lambda only
])
def test_serving_context_selects_one_stack(tmp_path, selection, stack):
    cfg = load_config("dev")
    assembly = build_app(
        cfg, outdir=tmp_path, nag=False, extra_context={"serving": selection}
    ).synth()
    serving = [s.stack_name for s in assembly.stacks if "-serving-" in s.stack_name]
    assert serving == [stack]


def test_serving_context_all_and_errors():
    cfg = load_config("dev")
    assert serving_selection("all", cfg) == {("abalone", "staging"), ("abalone", "prod"),
                                             ("breast-cancer", "staging"), ("breast-cancer", "prod")}
    assert serving_selection(None, cfg) == set()
    with pytest.raises(ValueError) as exc:
        serving_selection("abalone/qa", cfg)
    assert str(exc.value) == (
        "-c serving=abalone/qa: 'abalone/qa' is not a served model/stage of config/dev.yaml; use 'all' or one of: "
        "abalone/prod, abalone/staging, breast-cancer/prod, breast-cancer/staging"
    )


@pytest.mark.parametrize("env", CONFIGS)
def test_no_export_or_fixed_name_defined_twice_with_every_option(env, tmp_path):
    cfg = load_config(env)
    cfg = cfg.model_copy(
        update={
            "workstation": cfg.workstation.model_copy(update={"enabled": True}),
            "platform_pipeline": cfg.platform_pipeline.model_copy(update={"enabled": True}),
        }
    )
    assembly = build_app(cfg, outdir=tmp_path, nag=False, extra_context={"serving": "all"}).synth()
    stacks = _stacks(assembly)
    # One owner: the top level holds the pipeline (and the serving stacks the deploy pipeline asks for), the Stages
    # hold the environments' stacks.
    top = sorted(s.stack_name for s in assembly.stacks)
    assert all(n.endswith("-pipeline") or "-serving-" in n for n in top), top
    templates = {f"{s.hierarchical_id}": s.template for s in stacks}
    exports, physical = _names(templates)
    twice = {name: where for name, where in exports.items() if len(where) > 1}
    assert not twice, f"export names defined twice: {twice}"
    twice = {name: where for name, where in physical.items() if len(where) > 1}
    assert not twice, f"fixed physical names defined twice: {twice}"
    assert exports, "no export found: the check reads nothing"
    assert physical, "no fixed physical name found: the check reads nothing"
