"""A fork adds a dataset and models with YAML and a CSV only (docs/FORKING.md), and brings its own training code.

One temporary config directory holds a copy of config/dev.yaml plus a third dataset (``customers``: a ';'-delimited
CSV with a string ID, a string category, numeric features and a string target) and two models on it: ``churn``
(binary classification on the string target, the shipped training code) and ``spend`` (regression with the team's
training code, ``training: tests/fixtures/custom_training``). The app is synthesized once for it (offline, as
``cdk synth -c config_dir=<dir>`` does), and the CSV goes through the Glue transform (local Spark) with the dataset's
schema document, then through the local pipeline for both models.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import random
import tarfile
from pathlib import Path

import pytest
import yaml

from platform_config import ConfigError, load_config
from platform_config.schema import REPOSITORY_ROOT

REPO = Path(__file__).resolve().parents[1]
CUSTOM_TRAINING = "tests/fixtures/custom_training"
DATASET = {
    "name": "customers",
    "format": {"delimiter": ";"},
    "max_reject_ratio": 0.05,
    "triggers": {"raw_upload": True, "schedule": "cron(0 4 * * ? *)"},
    "columns": [
        {"name": "customer_id", "raw": "Customer ID", "type": "string"},
        {"name": "plan", "type": "string", "allowed": ["BASIC", "PLUS", "PRO"], "upper_case": True},
        {"name": "tenure_months", "raw": "Tenure (months)", "type": "integer", "min": 0, "max": 600},
        {"name": "monthly_spend", "raw": "Monthly spend", "type": "double", "min": 0, "max": 10000},
        {"name": "support_calls", "raw": "Support calls", "type": "integer", "min": 0, "max": 100},
        {"name": "churned", "type": "string", "allowed": ["yes", "no"]},
    ],
}
MODELS = [
    {"name": "churn", "dataset": "customers", "target_column": "churned", "problem_type": "binary_classification",
     "positive_label": "yes", "exclude_columns": ["customer_id"], "metric": "auc", "threshold": 0.7,
     "hyperparameters": {"max_depth": 3, "eta": 0.3, "num_round": 30}, "endpoint": {"enabled": False}},
    {"name": "spend", "dataset": "customers", "target_column": "monthly_spend", "problem_type": "regression",
     "exclude_columns": ["customer_id"], "metric": "rmse", "threshold": 40.0, "training": CUSTOM_TRAINING,
     "hyperparameters": {"max_depth": 3, "num_round": 40}, "endpoint": {"enabled": False}},
]
HEADER = ["Customer ID", "plan", "Tenure (months)", "Monthly spend", "Support calls", "churned"]


def raw_rows(count: int = 200, seed: int = 7) -> list[list[str]]:
    """Customers whose spend follows the plan and whose churn follows support calls and tenure (learnable)."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        plan = rng.choice(["basic", "plus", "pro"])
        tenure = rng.randint(0, 120)
        calls = rng.randint(0, 10)
        spend = {"basic": 20.0, "plus": 50.0, "pro": 120.0}[plan] + rng.gauss(0, 5) + tenure * 0.1
        churned = "yes" if calls * 0.5 - tenure / 40 + rng.gauss(0, 1) > 1.0 else "no"
        rows.append([f"C{i:04d}", plan, str(tenure), f"{max(spend, 0.0):.2f}", str(calls), churned])
    return rows


def write_config(directory: Path, models: list | None = None) -> Path:
    """config/dev.yaml plus the customers dataset and ``models`` (default MODELS), as ``<directory>/dev.yaml``."""
    data = yaml.safe_load((REPO / "config" / "dev.yaml").read_text())
    data["datasets"].append(DATASET)
    data["models"] += models if models is not None else MODELS
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dev.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return directory


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("fork-config"))


@pytest.fixture(scope="module")
def raw_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("raw") / "customers.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(HEADER)
        writer.writerows(raw_rows())
    return path


# --- synth ------------------------------------------------------------------------------------------------------
# The tests sharing an expensive module fixture (the synthesized app; the curated data) run on one xdist worker each.
SYNTH = pytest.mark.xdist_group("fork-app")
LOCAL = pytest.mark.xdist_group("fork-local-pipeline")


@pytest.fixture(scope="module")
def fork_app(config_dir, tmp_path_factory):
    from stacks.app_builder import build_app

    config = load_config("dev", config_dir)
    outdir = tmp_path_factory.mktemp("cdk-fork")
    platform = build_app(config, outdir=outdir, extra_context={"aws:cdk:disable-asset-staging": True,
                                                               "config_dir": str(config_dir)})
    assembly = platform.synth()
    templates = {s.stack_name: json.loads(Path(s.template_full_path).read_text()) for s in assembly.stacks}
    return config, platform, outdir, templates


def staged_asset(outdir: Path, asset_hash: str) -> Path:
    """The file cdk.out's asset manifests publish for ``asset_hash`` (what `cdk deploy` uploads)."""
    for manifest in outdir.glob("*.assets.json"):
        entry = json.loads(manifest.read_text()).get("files", {}).get(asset_hash)
        if entry:
            path = Path(entry["source"]["path"])
            return path if path.is_absolute() else outdir / path
    raise AssertionError(f"asset {asset_hash} is not in the asset manifests of {outdir}")


@SYNTH
def test_the_new_dataset_gets_its_glue_job_with_its_schema_document(fork_app):
    config, platform, _outdir, templates = fork_app
    jobs = {
        r["Properties"]["Name"]: r["Properties"]
        for r in templates[config.names.stack("data")]["Resources"].values() if r["Type"] == "AWS::Glue::Job"
    }
    job = jobs[config.names.etl_job("customers")]
    assert json.loads(job["DefaultArguments"]["--dataset_schema"]) == config.dataset("customers").schema_document()
    assert json.loads(job["DefaultArguments"]["--dataset_schema"])["format"]["delimiter"] == ";"
    assert config.names.etl_job("abalone") in jobs and config.names.etl_job("breast_cancer") in jobs


@SYNTH
@pytest.mark.parametrize("model", ["churn", "spend"])
def test_each_new_model_has_its_stack_started_by_its_datasets_etl(fork_app, model):
    config, _platform, _outdir, templates = fork_app
    template = templates[config.names.model_stack(model)]
    pipelines = [r for r in template["Resources"].values() if r["Type"] == "AWS::SageMaker::Pipeline"]
    assert [p["Properties"]["PipelineName"] for p in pipelines] == [config.names.model_resource(model)]
    starts = [
        r["Properties"]["EventPattern"]["detail"] for r in template["Resources"].values()
        if r["Type"] == "AWS::Events::Rule" and r["Properties"].get("EventPattern", {}).get("source") == ["aws.glue"]
        and r["Properties"]["EventPattern"]["detail"]["state"] == ["SUCCEEDED"]
    ]
    assert starts == [{"jobName": [config.names.etl_job("customers")], "state": ["SUCCEEDED"]}]


def archive_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}


@SYNTH
def test_the_custom_training_code_is_the_training_steps_source_dir(fork_app):
    config, platform, outdir, templates = fork_app
    spend, churn = platform.models["spend"].build, platform.models["churn"].build
    custom = archive_members(staged_asset(outdir, spend.train_source.asset_hash))
    fixture = REPOSITORY_ROOT / CUSTOM_TRAINING
    assert custom == {name: (fixture / name).read_bytes() for name in ("serve.py", "train.py")}
    shipped = archive_members(staged_asset(outdir, churn.train_source.asset_hash))
    assert shipped == {name: (REPO / "sagemaker_steps" / name).read_bytes() for name in ("serve.py", "train.py")}
    # The training step's sagemaker_submit_directory is that asset's object; the shipped model's is the shipped one.
    for model, build in (("spend", spend), ("churn", churn)):
        text = json.dumps(templates[config.names.model_stack(model)])
        submit_directory = text.split("sagemaker_submit_directory", 1)[1].split("SAGEMAKER_PROGRAM", 1)[0]
        assert f"/{build.train_source.asset_hash}." in submit_directory, model
    # The training source is in the code digest, so in the definition cache key and the packages' CodeDigest.
    assert churn.code_digest == platform.models["abalone"].build.code_digest
    assert spend.code_digest != churn.code_digest


# --- config errors ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "training, message",
    [
        ("tests/fixtures/no_such_dir", "models[2].training = 'tests/fixtures/no_such_dir': no such directory"),
        ("tests/fixtures/datasets", "models[2].training = 'tests/fixtures/datasets': the directory lacks train.py "
                                    "and serve.py"),
        ("/tmp", "models[2].training = '/tmp': must be a directory relative to the repository root"),
        ("../main", "models[2].training = '../main': must be a directory relative to the repository root"),
    ],
)
def test_a_bad_training_directory_is_one_line_naming_the_field(tmp_path, training, message):
    directory = write_config(tmp_path, models=[dict(MODELS[1], training=training)])
    with pytest.raises(ConfigError) as caught:
        load_config("dev", directory)
    assert len(str(caught.value).splitlines()) == 1
    assert message in str(caught.value)


# --- the data through the ETL transform and the local pipeline --------------------------------------------------
@pytest.fixture(scope="module")
def curated(config_dir, raw_csv, tmp_path_factory):
    """The raw CSV curated by the Glue transform with the dataset's schema document (local Spark)."""
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    from glue_jobs import etl_transform as et

    document = load_config("dev", config_dir).dataset("customers").schema_document()
    spec = et.DatasetSpec.from_document(document)
    spark = (SparkSession.builder.master("local[1]").appName("test_new_dataset_by_config")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1").getOrCreate())
    out = tmp_path_factory.mktemp("curated") / "customers"
    try:
        result = et.transform(spark, et.read_raw_csv(spark, str(raw_csv), spec.format), document, "2024-05-01")
        assert (result.schema_error, result.counts["rows_rejected"]) == (None, 0)
        assert et.write_curated(result, str(out)) == len(raw_rows())
        result.unpersist()
    finally:
        spark.stop()
    return out


def model_of(config_dir: Path, name: str):
    return next(m for m in load_config("dev", config_dir).models if m.name == name)


@LOCAL
def test_the_shipped_training_registers_the_new_classifier(config_dir, curated, tmp_path):
    from sagemaker_steps.local_runner import run_local_pipeline

    result = run_local_pipeline(curated, tmp_path, model_of(config_dir, "churn").spec)
    assert set(result.evaluation["binary_classification_metrics"]) == {"auc", "accuracy", "f1"}
    assert result.passed, result.fail_message
    metadata = json.loads((result.model_dir / "model_metadata.json").read_text())
    assert [f["name"] for f in metadata["features"]] == ["plan", "tenure_months", "monthly_spend", "support_calls"]


@LOCAL
def test_the_local_runner_runs_the_teams_training_code(config_dir, curated, tmp_path):
    from sagemaker_steps.local_runner import run_local_pipeline

    model = model_of(config_dir, "spend")
    result = run_local_pipeline(curated, tmp_path, model.spec, training_source_dir=model.training_dir)
    assert json.loads((result.model_dir / "custom_training.json").read_text())["trained_by"] == CUSTOM_TRAINING
    assert (result.model_dir / "code" / "serve.py").read_bytes() == (model.training_dir / "serve.py").read_bytes()
    assert set(result.evaluation["regression_metrics"]) == {"rmse", "mae", "r2"}
    assert result.passed, result.fail_message
    # The packaged handlers serve the model as the inference toolkit calls them.
    loader = importlib.util.spec_from_file_location("team_serve", result.model_dir / "code" / "serve.py")
    serve = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(serve)
    metadata = json.loads((result.model_dir / "model_metadata.json").read_text())
    row = ",".join("1" if c in ("plan_PRO", "tenure_months") else "0" for c in metadata["encoded_columns"])
    body, content_type = serve.output_fn(
        serve.predict_fn(serve.input_fn(row.encode(), "text/csv"), serve.model_fn(str(result.model_dir))), "text/csv"
    )
    assert content_type == "text/csv" and float(io.StringIO(body).readline()) > 60.0


def test_app_reads_the_config_dir_context(tmp_path, capsys):
    """`cdk synth -c config_dir=<dir>` reads <dir>/<env>.yaml (here a directory without it: the one-line error)."""
    import aws_cdk as cdk

    import app

    assert app.main(cdk.App(context={"env": "dev", "config_dir": str(tmp_path)})) == 1
    assert f"{tmp_path}/dev.yaml: no such config file" in capsys.readouterr().err


def test_the_training_source_is_every_file_of_the_directory_and_needs_both_scripts(tmp_path):
    from sagemaker_steps.pipeline_spec import training_source

    for name in ("train.py", "serve.py", "lib/features.py", "__pycache__/train.cpython-311.pyc", ".env", "x.pyc"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert sorted(training_source("xgboost", tmp_path)) == ["lib/features.py", "serve.py", "train.py"]
    (tmp_path / "serve.py").unlink()
    with pytest.raises(ValueError, match=r"lacks serve.py at its top"):
        training_source("xgboost", tmp_path)
