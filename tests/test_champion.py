"""Champion vs challenger (issue 14): the config reaches the spec, ResolveChampion finds the latest Approved package,
Evaluate scores both models on the same test split, and the condition registers only a challenger that beats the
champion by the margin (the local runner, as the demo runs it, against a moto server)."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from sagemaker_steps import champion, evaluate
from sagemaker_steps import pipeline_spec as spec
from sagemaker_steps.model_spec import METRICS, ModelSpec

ROOT = Path(__file__).resolve().parents[1]
GROUP = "mlops-test-abalone"
REGION = "us-east-1"


# --- the decision ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("challenger,champion_value,margin,higher,wins", [
    (2.0, 2.2, 0.1, False, True),  # rmse 2.0 vs 2.2, margin 0.1: better by 0.2
    (2.15, 2.2, 0.1, False, False),  # better by 0.05 only
    (2.2, 2.2, 0.0, False, True),  # margin 0: at least as good
    (2.3, 2.2, 0.0, False, False),
    (0.91, 0.90, 0.01, True, True),  # auc: higher is better
    (0.905, 0.90, 0.01, True, False),
    (3.0, None, 0.5, False, True),  # no champion: the first model
    (3.0, float("nan"), 0.0, False, True),  # a champion figure that is no number does not block
    (float("nan"), 2.0, 0.0, False, False),
])
def test_challenger_wins(challenger, champion_value, margin, higher, wins):
    assert evaluate.challenger_wins(challenger, champion_value, margin, higher) is wins


def test_evaluate_knows_every_metric_direction():
    assert evaluate.HIGHER_IS_BETTER == {m: h for ms in METRICS.values() for m, h in ms.items()}


def test_block_names_both_figures_and_the_margin():
    block = evaluate.champion_block("rmse", 2.5, 0.1, 2.2, {"package_arn": "arn:p/1", "version": 3})
    assert block["challenger_wins"] == 0 and block["champion"] == 2.2 and block["margin"] == 0.1
    assert block["summary"] == "challenger rmse 2.5000 vs champion rmse 2.2000 (version 3), margin 0.1: rejected"
    none = evaluate.champion_block("rmse", 2.5, 0.0, reason="no Approved package in g yet")
    assert none["challenger_wins"] == 1 and none["champion"] is None
    assert "no champion (no Approved package in g yet)" in none["summary"]


def test_config_reaches_the_spec_and_the_margin_is_never_negative():
    from platform_config import load_config

    for env in ("dev", "prod"):
        for model in load_config(env).models:
            assert (model.spec.champion, model.spec.champion_margin) == (model.champion.enabled,
                                                                          model.champion.margin)
            assert model.spec.as_dict()["champion_margin"] == model.champion.margin
    with pytest.raises(ValueError, match="champion_margin -0.1 must be 0 or more"):
        ModelSpec(name="m", target="rings", metric="rmse", threshold=3.0, champion_margin=-0.1)


def test_evaluate_arguments_carry_the_comparison():
    model = ModelSpec(name="m", target="rings", metric="mae", threshold=3.0, champion_margin=0.25)
    assert spec.evaluate_arguments(model=model) == [
        "--bootstrap-rounds", "100", "--seed", "42", "--champion-dir", "/opt/ml/processing/champion",
        "--metric", "mae", "--champion-margin", "0.25"]
    assert spec.evaluate_arguments(model=dataclasses.replace(model, champion=False)) == spec.evaluate_arguments()


# --- ResolveChampion against the registry (moto in process) -----------------------------------------------------------
def _model_tar(marker: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = marker.encode()
        info = tarfile.TarInfo("marker.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _package(sm, s3, bucket: str, name: str, status: str) -> str:
    key = f"models/abalone/{name}/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=_model_tar(name))
    arn = sm.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": "123.dkr.ecr.us-east-1.amazonaws.com/x:1",
                                                "ModelDataUrl": f"s3://{bucket}/{key}"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
    )["ModelPackageArn"]
    return arn


def test_resolve_champion_takes_the_newest_approved_package(tmp_path, monkeypatch):
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        sm, s3 = boto3.client("sagemaker", region_name=REGION), boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="artifacts")
        sm.create_model_package_group(ModelPackageGroupName=GROUP)
        first = tmp_path / "first"
        assert champion.resolve(sm, s3, GROUP, str(first)) == {"none": f"no Approved package in {GROUP} yet"}
        assert sorted(p.name for p in first.iterdir()) == ["champion.json"]

        _package(sm, s3, "artifacts", "v1", "Approved")
        newest_approved = _package(sm, s3, "artifacts", "v2", "Approved")
        _package(sm, s3, "artifacts", "v3", "PendingManualApproval")  # newer, not approved: not the champion
        out = tmp_path / "champion"
        group_arn = f"arn:aws:sagemaker:{REGION}:123456789012:model-package-group/{GROUP}"
        record = champion.resolve(sm, s3, group_arn, str(out))
        assert record["package_arn"] == newest_approved and record["version"] == 2
        assert json.loads((out / "champion.json").read_text()) == record
        with tarfile.open(out / "model.tar.gz") as tar:
            assert tar.extractfile("marker.txt").read() == b"v2"
    assert champion.region_of(group_arn) == REGION and champion.region_of(GROUP) is None
    assert champion.region_of(group_arn, "eu-west-1") == "eu-west-1"


def test_resolve_champion_without_a_group_records_no_champion(tmp_path):
    assert champion.main(["--output-dir", str(tmp_path)]) == 0
    assert "no model package group" in json.loads((tmp_path / "champion.json").read_text())["none"]


def test_evaluate_without_its_champion_input_fails(tmp_path):
    """A job whose champion input is missing (the defect: Evaluate ignoring ResolveChampion) fails, it never
    registers without the comparison the config asks for."""
    with pytest.raises(evaluate.EvaluateError, match="has no champion input"):
        evaluate.read_champion(str(tmp_path / "missing"))


# --- the local runner: first model, a worse challenger rejected, an equal one accepted --------------------------------
@pytest.fixture(scope="module")
def moto_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> Path:
    from sagemaker_steps.local_runner import curate_csv_for_local

    return curate_csv_for_local(ROOT / "data" / "abalone.csv", tmp_path_factory.mktemp("curated"), "2024-01-01")


def test_worse_challenger_is_rejected_with_both_figures(moto_server, curated, tmp_path, monkeypatch):
    import boto3

    from sagemaker_steps.local_runner import run_local_pipeline

    for name, value in {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    sm = boto3.client("sagemaker", region_name=REGION, endpoint_url=moto_server)
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_server)
    s3.create_bucket(Bucket="artifacts")
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    model = ModelSpec(name="abalone", target="rings", metric="rmse", threshold=3.0, exclude_columns=("ingest_date",),
                      hyperparameters={"num_round": 30})

    first = run_local_pipeline(curated, tmp_path / "first", model, model_package_group=GROUP)
    assert first.passed and first.champion["champion"] is None and first.champion["challenger_wins"] == 1
    s3.upload_file(str(first.model_artifact), "artifacts", "models/abalone/first/model.tar.gz")
    arn = sm.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus="Approved",
        InferenceSpecification={"Containers": [{"Image": "i", "ModelDataUrl":
                                                "s3://artifacts/models/abalone/first/model.tar.gz"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
    )["ModelPackageArn"]

    worse = dataclasses.replace(model, hyperparameters={"num_round": 30, "max_depth": 1})  # stumps
    second = run_local_pipeline(curated, tmp_path / "second", worse, model_package_group=GROUP)
    block = second.champion
    assert second.meets_threshold  # good enough for the threshold, not for the champion
    assert "meets the threshold 3.0 but does not beat the champion (challenger rmse" in second.fail_message
    assert block["champion_package_arn"] == arn
    assert block["champion"] == pytest.approx(first.metric_value)  # the champion, rescored on the same split
    assert block["challenger"] == second.metric_value > block["champion"]
    assert block["challenger_wins"] == 0 and not second.passed
    assert f"vs champion rmse {block['champion']:.4f} (version 1), margin 0: rejected" in second.fail_message
    assert "not registered" in second.fail_message

    same = run_local_pipeline(curated, tmp_path / "same", dataclasses.replace(model, champion_margin=0.0),
                              model_package_group=GROUP)
    assert same.champion["challenger"] == same.champion["champion"] and same.passed  # margin 0: as good is enough
    stricter = run_local_pipeline(curated, tmp_path / "strict", dataclasses.replace(model, champion_margin=0.05),
                                  model_package_group=GROUP)
    assert not stricter.passed and stricter.meets_threshold
    assert "meets the threshold 3.0 but does not beat the champion" in stricter.fail_message


def test_champion_script_runs_alone_as_the_job_runs_it(tmp_path):
    """The job uploads champion.py alone: it imports nothing of the repository."""
    out = subprocess.run([sys.executable, str(ROOT / "sagemaker_steps" / "champion.py"), "--output-dir",
                          str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin"})
    assert out.returncode == 0, out.stderr
    assert "No champion" in out.stdout
