"""The Glue part of the rehearsal: the ETL job runs from the staged assembly as Glue runs it, and each deploy defect
it exists for, reintroduced into a copy of the assembly, makes it fail with a message naming the defect."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from rehearsal.assembly import Assembly, RehearsalError
from rehearsal.cloud import Cloud
from rehearsal.context import Rehearsal
from rehearsal.glue import read_job, rehearse_crawler, run_glue_job

REPO = Path(__file__).resolve().parents[2]
ASSETS = "cdk-hnb659fds-assets-123456789012-us-east-1"


@pytest.fixture()
def sample_csv(tmp_path) -> Path:
    """20 good rows of the abalone sample and one bad one (sex X, length not a number)."""
    lines = (REPO / "data" / "abalone.csv").read_text().splitlines()
    path = tmp_path / "sample.csv"
    path.write_text("\n".join(lines[:21] + ["X,not-a-number,0.3,0.1,0.4,0.2,0.1,0.1,9"]) + "\n")
    return path


def _rehearsal(outdir: Path, workdir: Path):
    assembly = Assembly(outdir)
    cloud = Cloud(assembly).start()
    cloud.deploy([assembly.stack("-data")])
    workdir.mkdir(exist_ok=True)
    return Rehearsal(assembly, cloud, workdir, log=lambda _: None), cloud


def _data_template(outdir: Path) -> tuple[Path, dict]:
    manifest = json.loads((outdir / "manifest.json").read_text())
    for artifact_id, artifact in manifest["artifacts"].items():
        props = artifact.get("properties", {})
        name = props.get("stackName", artifact_id)
        if artifact.get("type") == "aws:cloudformation:stack" and name.endswith("-data"):
            path = outdir / props["templateFile"]
            return path, json.loads(path.read_text())
    raise AssertionError("no data stack")


def _one(template: dict, cfn_type: str, contains: str = "") -> dict:
    found = [r for k, r in template["Resources"].items() if r["Type"] == cfn_type and contains in k]
    assert len(found) == 1, (cfn_type, contains)
    return found[0]


def test_job_runs_from_the_staged_assembly(dev_assembly_dir, tmp_path, sample_csv):
    rh, cloud = _rehearsal(dev_assembly_dir, tmp_path / "work")
    try:
        summary = run_glue_job(rh, raw_files={"sample.csv": sample_csv})
        counts = summary["etl_counts"]
        assert counts["status"] == "succeeded"
        assert counts["rows_in"] == 21 == counts["rows_curated"] + counts["rows_rejected"]
        assert counts["rows_rejected"] == 1
        assert any(k.endswith(".parquet") and "/ingest_date=" in k for k in summary["curated_keys"])
        assert any(k.endswith(".json") for k in summary["quarantine_keys"])
        assert summary["extra_py_files"][0].endswith(".zip")  # modules shipped as Glue can import them
        assert summary["crawler"] and summary["denials"] == []
        assert rh.facts["glue"] is summary
        # The bookmark hands over only new objects: a second run with nothing new reads nothing.
        again = run_glue_job(rh, raw_files={}, crawl=False)
        assert again["etl_counts"]["rows_in"] == 0 and again["curated_keys"] == []
    finally:
        cloud.stop()


def test_extra_py_module_staged_under_its_hash_name_fails(assembly_copy, tmp_path, sample_csv):
    """(a) --extra-py-files naming the module as a .py asset: Glue stages it as <hash>.py (aws/aws-cdk#20481)."""
    template_path, template = _data_template(assembly_copy)
    job = _one(template, "AWS::Glue::Job")
    # The module the deployed zip carries, as a file asset named by its hash (what Code.from_asset('x.py') gives).
    assembly = Assembly(assembly_copy)
    stack = assembly.stack("-data")
    zip_uri = read_job(Rehearsal(assembly, None, tmp_path), "-data").extra_py_files[0]  # type: ignore[arg-type]
    assert zip_uri.endswith(".zip")
    module = zipfile.ZipFile(io.BytesIO(assembly.asset_for_s3_uri(zip_uri).content())).read("etl_transform.py")
    digest = hashlib.sha256(module).hexdigest()
    (assembly_copy / f"asset.{digest}.py").write_bytes(module)
    assets_path = next(assembly_copy.glob(f"{stack.name}.assets.json"))
    assets = json.loads(assets_path.read_text())
    assets["files"][digest] = {
        "source": {"path": f"asset.{digest}.py", "packaging": "file"},
        "destinations": {"current": {"bucketName": ASSETS, "objectKey": f"{digest}.py"}},
    }
    assets_path.write_text(json.dumps(assets))
    job["Properties"]["DefaultArguments"]["--extra-py-files"] = f"s3://{ASSETS}/{digest}.py"
    template_path.write_text(json.dumps(template))

    rh, cloud = _rehearsal(assembly_copy, tmp_path / "work")
    try:
        with pytest.raises(RehearsalError) as err:
            run_glue_job(rh, raw_files={"sample.csv": sample_csv})
    finally:
        cloud.stop()
    message = str(err.value)
    assert "import etl_transform" in message and f"{digest}.py" in message and "aws/aws-cdk#20481" in message


def test_crawler_logs_arn_without_a_group_name_fails(assembly_copy, tmp_path):
    """(b) The crawler role's logs statement names `...:log-group` with no group: its log writes are denied."""
    template_path, template = _data_template(assembly_copy)
    policy = _one(template, "AWS::IAM::Policy", "CrawlerRole")
    statement = next(s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == "CrawlerLogs")
    statement["Resource"] = {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group"}
    template_path.write_text(json.dumps(template))

    rh, cloud = _rehearsal(assembly_copy, tmp_path / "work")
    try:
        job = read_job(rh, "-data")
        # What the job leaves for the crawler (the job itself is rehearsed in test_job_runs_from_the_staged_assembly).
        bucket, _, prefix = job.arguments["--curated_path"][5:].partition("/")
        cloud.admin("s3").put_object(Bucket=bucket, Key=f"{prefix}ingest_date=2024-01-01/part-0.parquet", Body=b"x")
        with pytest.raises(RehearsalError) as err:
            rehearse_crawler(rh, job)
    finally:
        cloud.stop()
    message = str(err.value)
    assert "crawler logs IAM resource `arn:aws:logs:us-east-1:123456789012:log-group` with no name" in message
    assert "AccessDenied" in message or "may not logs:" in message


def test_crawl_new_folders_only_with_update_in_database_fails(assembly_copy, tmp_path, sample_csv):
    """(c) CRAWL_NEW_FOLDERS_ONLY needs UpdateBehavior LOG and DeleteBehavior LOG: Glue rejects the crawler."""
    template_path, template = _data_template(assembly_copy)
    crawler = _one(template, "AWS::Glue::Crawler")["Properties"]
    crawler["RecrawlPolicy"] = {"RecrawlBehavior": "CRAWL_NEW_FOLDERS_ONLY"}
    crawler["SchemaChangePolicy"] = {"UpdateBehavior": "UPDATE_IN_DATABASE", "DeleteBehavior": "LOG"}
    template_path.write_text(json.dumps(template))

    rh, cloud = _rehearsal(assembly_copy, tmp_path / "work")
    try:
        with pytest.raises(RehearsalError, match="CRAWL_NEW_FOLDERS_ONLY with SchemaChangePolicy UpdateBehavior "
                                                 "UPDATE_IN_DATABASE / DeleteBehavior LOG: Glue requires LOG for both"):
            run_glue_job(rh, raw_files={"sample.csv": sample_csv})
    finally:
        cloud.stop()
