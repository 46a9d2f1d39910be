"""models[].batch in the model stack (dev.yaml ships it off): the state machine, its triggers and the predictions
table in the environment's catalog database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from platform_config import load_config
from stacks.app_builder import build_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict:
    config_dir = tmp_path_factory.mktemp("config")
    data = yaml.safe_load((ROOT / "config" / "dev.yaml").read_text())
    data["models"][0]["batch"] = {"enabled": True, "schedule": "cron(0 5 * * ? *)", "on_dataset_etl": True}
    (config_dir / "dev.yaml").write_text(yaml.safe_dump(data))
    platform = build_app(load_config("dev", config_dir), outdir=tmp_path_factory.mktemp("cdk-batch"),
                         extra_context={"aws:cdk:disable-asset-staging": True})
    assembly = platform.synth()  # cdk-nag runs on the whole app: unacknowledged findings fail here
    stack = platform.stacks["model-abalone"]
    return json.loads(Path(assembly.get_stack_by_name(stack.stack_name).template_full_path).read_text())


def _of_type(template: dict, cfn_type: str) -> list[dict]:
    return [r for r in template["Resources"].values() if r["Type"] == cfn_type]


def test_batch_state_machine_starts_on_schedule_and_after_the_etl(template):
    assert len(_of_type(template, "AWS::StepFunctions::StateMachine")) == 1
    patterns = [json.dumps(r["Properties"]) for r in _of_type(template, "AWS::Events::Rule")]
    targets_machine = [p for p in patterns if "StateMachine" in p]
    assert any("cron(0 5 * * ? *)" in p for p in targets_machine)
    assert any("mlops-dev-etl-abalone" in p and "SUCCEEDED" in p for p in targets_machine)


def test_predictions_table_is_in_the_environment_database(template):
    tables = [t["Properties"] for t in _of_type(template, "AWS::Glue::Table")]
    (table,) = tables
    assert table["DatabaseName"] == "mlops_dev"
    assert table["TableInput"]["Name"] == "abalone_predictions"
