"""The names module: one place for every name another system relies on, standard library only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from platform_config import load_config
from platform_config.names import PARTS, SERVING_CONTEXT, Names

ROOT = Path(__file__).resolve().parent.parent


def test_names_of_an_environment():
    names = Names("mlops", "dev")
    assert names.prefix == "mlops-dev"
    assert names.stack("data") == "mlops-dev-data"
    assert names.model_stack("abalone") == "mlops-dev-model-abalone"
    assert names.serving_stack("abalone", "prod") == "mlops-dev-serving-abalone-prod"
    assert Names.serving_context("abalone", "prod") == "abalone/prod" and SERVING_CONTEXT == "serving"
    assert names.lake_export("raw", "name") == "mlops-dev-lake-raw-name"
    assert names.lake_export("key", "arn") == "mlops-dev-lake-key-arn"
    assert names.alarm_topic_export == "mlops-dev-alarm-topic-arn"
    assert names.alarm_topic_key_export == "mlops-dev-alarm-topic-key-arn"
    assert names.etl_job("abalone") == "mlops-dev-etl-abalone"
    assert names.model_resource("abalone") == "mlops-dev-abalone"
    assert names.serving_resource("abalone", "staging") == "mlops-dev-abalone-staging"
    assert names.deploy_pipeline("abalone") == "mlops-dev-abalone-deploy"
    assert Names.raw_prefix("abalone") == "abalone/" and Names.quarantine_prefix("abalone") == "quarantine/abalone/"
    assert Names.model_artifacts_prefix("abalone") == "models/abalone/"
    assert Names.data_capture_prefix("abalone", "prod") == "data-capture/abalone/prod/"


def test_names_of_the_ci_cd():
    names = Names("mlops", "dev")
    assert names.build_pipeline("abalone") == "mlops-dev-abalone-build"
    assert names.platform_pipeline == "mlops-dev-platform"
    assert names.resolve_project("abalone") == "mlops-dev-abalone-deploy-resolve"
    assert names.deploy_project("abalone", "prod") == "mlops-dev-abalone-deploy-prod"
    assert names.smoke_project("abalone", "staging") == "mlops-dev-abalone-smoke-staging"
    assert Names.source_object("abalone") == "source/abalone.zip"
    assert Names.source_object("platform") == "source/platform.zip"


def test_the_config_hands_out_its_names():
    config = load_config("dev")
    assert config.names == Names(config.project, config.environment)
    assert config.prefix() == config.names.prefix


def test_the_longest_serving_name_fits_the_services():
    longest = Names("p" * PARTS["project"][1], "e" * PARTS["environment"][1])
    assert len(longest.serving_stack("m" * PARTS["model"][1], "s" * PARTS["stage"][1])) <= 128  # CloudFormation


def test_names_module_needs_only_the_standard_library():
    """CodeBuild installs only boto3: importing the names module must not import pydantic, yaml or aws_cdk."""
    code = ("import sys; import platform_config.names; "
            "bad = [m for m in ('pydantic', 'yaml', 'aws_cdk') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_names_of_batch_inference():
    assert Names.batch_prefix("abalone") == "batch/abalone/"
    assert Names.predictions_prefix("abalone") == "batch-predictions/abalone/"
    assert Names.predictions_table("breast-cancer") == "breast_cancer_predictions"
    # The predictions (curated bucket) can never be under a dataset's curated prefix, nor the runs' working files
    # (artifacts bucket) under the build pipeline's.
    import re

    from platform_config.datasets import DATASET_NAME_PATTERN
    assert not re.match(DATASET_NAME_PATTERN, Names.predictions_prefix("abalone").split("/")[0])
    assert not Names.batch_prefix("abalone").startswith(Names.model_artifacts_prefix("abalone"))


def test_ground_truth_prefixes():
    assert Names.ground_truth_upload_prefix("abalone", "prod") == "ground-truth/abalone/prod/"
    assert Names.model_monitor_ground_truth_prefix("abalone", "prod") == "model-monitor/ground-truth/abalone/prod/"
    assert Names.ground_truth_quarantine_prefix("abalone", "prod") == "quarantine/ground-truth/abalone/prod/"
    # the ingestion writes outside what it reads (no event loop), and no dataset's raw prefix can be the upload one
    upload = Names.ground_truth_upload_prefix("abalone", "prod")
    for written in (Names.model_monitor_ground_truth_prefix("abalone", "prod"),
                    Names.ground_truth_quarantine_prefix("abalone", "prod")):
        assert not written.startswith(upload) and not upload.startswith(written)
    import re

    from platform_config.datasets import DATASET_NAME_PATTERN
    assert not re.match(DATASET_NAME_PATTERN, upload.split("/")[0])


def test_glue_database_is_the_prefix_with_underscores():
    from platform_config.names import Names as _Names

    assert _Names(project="mlops", environment="dev").glue_database == "mlops_dev"
