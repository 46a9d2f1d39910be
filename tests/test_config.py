"""A wrong config value fails with one line naming the file, the field, the value and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from platform_config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((ROOT / "config" / "dev.yaml").read_text())
    mutate(data)
    (tmp_path / "dev.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


def _error(tmp_path: Path, mutate) -> str:
    with pytest.raises(ConfigError) as info:
        load_config("dev", _write(tmp_path, mutate))
    return str(info.value)


def test_shipped_configs_are_valid():
    for env in ("dev", "prod"):
        cfg = load_config(env)
        assert cfg.environment == env and cfg.models


def test_negative_workers(tmp_path):
    msg = _error(tmp_path, lambda d: d["data_lake"].update(etl_workers=1))
    assert msg.endswith("dev.yaml: data_lake.etl_workers = 1: Input should be greater than or equal to 2")


def test_unknown_field_names_the_field(tmp_path):
    msg = _error(tmp_path, lambda d: d["models"][0].update(treshold=3))
    assert msg.endswith(
        "dev.yaml: models[0].treshold: unknown field; remove it or check its spelling (see README, 'Configuration')"
    )


def test_missing_required_field(tmp_path):
    msg = _error(tmp_path, lambda d: d["models"][0].pop("target_column"))
    assert msg.endswith(
        "dev.yaml: models[0].target_column: required field is missing; add it (see README, 'Configuration')"
    )


def test_metric_not_valid_for_problem_type(tmp_path):
    msg = _error(tmp_path, lambda d: d["models"][0].update(metric="auc"))
    assert msg.endswith(
        "dev.yaml: models[0]: metric 'auc' is not computed for problem_type regression; use one of ['mae', 'r2', 'rmse']"
    )


def test_bad_literal_lists_allowed_values(tmp_path):
    msg = _error(tmp_path, lambda d: d["models"][0].update(problem_type="clustering"))
    assert "dev.yaml: models[0].problem_type = 'clustering': Input should be 'regression' or 'binary_classification'" in msg


def test_invalid_model_name(tmp_path):
    msg = _error(tmp_path, lambda d: d["models"][0].update(name="Abalone_Model"))
    assert "models[0].name = 'Abalone_Model': String should match pattern" in msg


def test_bad_email_and_account(tmp_path):
    msg = _error(tmp_path, lambda d: d.update(alarm_emails=["not-an-email"]))
    assert msg.endswith("dev.yaml: alarm_emails: 'not-an-email' is not an email address")
    msg = _error(tmp_path, lambda d: d.update(account="12345"))
    assert "dev.yaml: account = '12345': String should match pattern '^\\d{12}$'" in msg


def test_autoscaling_range(tmp_path):
    msg = _error(tmp_path, lambda d: d["models"][0]["endpoint"].update(autoscaling={"min_capacity": 3, "max_capacity": 2}))
    assert msg.endswith("dev.yaml: models[0].endpoint.autoscaling: max_capacity (2) must be at least min_capacity (3)")


def test_glue_alarm_threshold_moved_to_the_data_lake(tmp_path):
    """The ETL job has one alarm, in the data stack: its threshold is a data_lake field, not a per-model one."""
    msg = _error(tmp_path, lambda d: d["models"][0].setdefault("alarms", {}).update(glue_job_failures=2))
    assert msg.endswith(
        "dev.yaml: models[0].alarms: glue_job_failures moved to data_lake.etl_failed_tasks_alarm (the ETL job has one "
        "alarm, in the data stack); move the value there"
    )
    msg = _error(tmp_path, lambda d: d["data_lake"].update(etl_failed_tasks_alarm=0))
    assert msg.endswith("dev.yaml: data_lake.etl_failed_tasks_alarm = 0: Input should be greater than or equal to 1")


def test_destroy_refused_in_prod(tmp_path):
    data = yaml.safe_load((ROOT / "config" / "prod.yaml").read_text())
    data["removal_policy"] = "destroy"
    (tmp_path / "prod.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="removal_policy 'destroy' is refused for environment 'prod'; use 'retain'"):
        load_config("prod", tmp_path)


def test_sklearn_cannot_be_served_in_lambda(tmp_path):
    msg = _error(tmp_path, lambda d: d["models"][0].update(framework="sklearn"))
    assert "use lambda.mode: endpoint_proxy or framework: xgboost" in msg


def test_missing_file_lists_choices(tmp_path):
    (tmp_path / "dev.yaml").write_text("project: x\n")
    with pytest.raises(ConfigError) as info:
        load_config("staging", tmp_path)
    assert str(info.value).endswith("staging.yaml: no such config file; pass -c env=<name> with one of ['dev']")


def test_yaml_syntax_error_has_line(tmp_path):
    (tmp_path / "dev.yaml").write_text("project: [unclosed\n")
    with pytest.raises(ConfigError, match=r"dev.yaml: not valid YAML at line 2"):
        load_config("dev", tmp_path)


def test_environment_must_match_file(tmp_path):
    msg = _error(tmp_path, lambda d: d.update(environment="prod"))
    assert msg.endswith("dev.yaml: environment = 'prod': must match the file name; set environment: dev")


def test_app_prints_one_line_and_no_traceback(tmp_path):
    """What `cdk synth -c env=broken` shows: the config error, exit 1, no jsii stack trace."""
    bad = tmp_path / "config"
    bad.mkdir()
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py")],
        cwd=ROOT,
        env={"CDK_CONTEXT_JSON": '{"env": "nope"}', "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "config/nope.yaml: no such config file; pass -c env=<name> with one of ['dev', 'prod']" in result.stderr


def test_bad_schedules(tmp_path):
    msg = _error(tmp_path, lambda d: d["models"][0].update(pipeline_schedule="every day"))
    assert msg.endswith(
        "dev.yaml: models[0].pipeline_schedule = 'every day': must be an EventBridge expression such as "
        "'cron(0 3 * * ? *)' or 'rate(1 day)'"
    )
    msg = _error(tmp_path, lambda d: d["data_lake"].update(etl_schedule="cron(0 3 * * ? *)"))
    assert msg.endswith("dev.yaml: data_lake: etl_schedule moved to datasets[].triggers.schedule (each dataset has its "
                        "own ETL job and triggers); move the value there")


def test_stage_in_another_account_is_refused(tmp_path):
    msg = _error(tmp_path, lambda d: d["models"][0].update(stages=[{"name": "prod", "account": "123456789012"}]))
    assert msg.endswith(
        "dev.yaml: (top level): models 'abalone' stage 'prod' sets account 123456789012 but the environment's is "
        "unset: a serving stack reads the lake of its own environment; put that stage in the config of the "
        "environment (account) it runs in"
    )


@pytest.mark.parametrize("region", ["ap-south-2", "ap-southeast-4", "ca-west-1", "us-gov-west-1"])
def test_region_without_the_platforms_images_fails_with_the_supported_list(tmp_path, region):
    from platform_config.schema import supported_regions

    msg = _error(tmp_path, lambda d: d.update(region=region))
    assert "\n" not in msg
    assert msg.startswith(f"{tmp_path / 'dev.yaml'}: region = '{region}': region {region} is not supported: ")
    assert msg.endswith("; use one of " + ", ".join(supported_regions()))


def test_supported_regions_come_from_the_sdk_image_config():
    from mlops_constructs.sagemaker_definition import image_registries, model_monitor_registries
    from platform_config.schema import supported_regions
    from sagemaker_steps.pipeline_spec import CONTAINER_FRAMEWORK_VERSIONS

    regions = set(supported_regions())
    assert {"us-east-1", "eu-west-1", "ap-southeast-2"} <= regions
    assert regions <= set(model_monitor_registries())
    for framework, version in CONTAINER_FRAMEWORK_VERSIONS.items():
        assert regions <= set(image_registries(framework, version))


def test_a_supported_region_loads(tmp_path):
    assert load_config("dev", _write(tmp_path, lambda d: d.update(region="eu-west-1"))).region == "eu-west-1"


def test_loading_a_config_without_region_does_not_import_the_sdk():
    code = (
        "import sys; from platform_config import load_config; load_config('dev'); "
        "print('sagemaker' in sys.modules, 'aws_cdk' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_serving_names_too_long_for_lambda_fail_with_one_line(tmp_path):
    data = yaml.safe_load((ROOT / "config" / "dev.yaml").read_text())
    data.update(project="p" * 16, environment="sandbox1")
    data["models"][0].update(name="m" * 20, stages=[{"name": "s" * 10}])
    (tmp_path / "sandbox1.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config("sandbox1", tmp_path)
    msg = str(info.value)
    name = f"{'p' * 16}-sandbox1-{'m' * 20}-{'s' * 10}"
    assert "\n" not in msg and len(name) == 57
    assert msg.endswith(
        f"sandbox1.yaml: (top level): '{name}' (project-environment-model-stage) is 57 characters; keep it within "
        "54 (it names the SageMaker endpoint, max 63, the inference Lambda function, max 64, and the Model Monitor "
        "schedule): shorten the project, model or stage name"
    )


def test_account_wide_log_groups_are_opt_in(tmp_path):
    assert load_config("dev").sagemaker_job_log_groups is False
    assert load_config("dev", _write(tmp_path, lambda d: d.update(sagemaker_job_log_groups=True))).sagemaker_job_log_groups
