"""The Glue part of the rehearsal: each dataset's ETL job runs from the staged assembly as Glue runs it, the declared
table describes what it writes, the optional crawler runs under its role, and each deploy defect the rehearsal exists
for, reintroduced into a copy of an assembly, makes it fail with a message naming the defect.

The dev config runs no crawler (the table is declared from the schema) and has no switch for one, so the crawler's
tests synthesize a small app of one ``GlueEtl(crawler=True)`` (``crawler_assembly_dir``)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from rehearsal.assembly import Assembly, RehearsalError
from rehearsal.cloud import Cloud
from rehearsal.context import Rehearsal
from rehearsal.glue import read_job, read_jobs, rehearse_crawler, run_glue_job

REPO = Path(__file__).resolve().parents[2]
ASSETS = "cdk-hnb659fds-assets-123456789012-us-east-1"


@pytest.fixture()
def sample_csv(tmp_path) -> Path:
    """20 good rows of the abalone sample and one bad one (sex X, length not a number)."""
    lines = (REPO / "data" / "abalone.csv").read_text().splitlines()
    path = tmp_path / "sample.csv"
    path.write_text("\n".join(lines[:21] + ["X,not-a-number,0.3,0.1,0.4,0.2,0.1,0.1,9"]) + "\n")
    return path


@pytest.fixture(scope="module")
def crawler_assembly_dir(tmp_path_factory) -> Path:
    """cdk.out of a stack ``crawler-data`` with one GlueEtl of the abalone schema, crawler on, assets staged."""
    import aws_cdk as cdk
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_s3 as s3

    from mlops_constructs.glue_etl import GlueEtl
    from platform_config import load_config
    from stacks import code_locations as code

    outdir = tmp_path_factory.mktemp("rehearsal-cdk-crawler")
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "crawler-data")
    key = kms.Key(stack, "Key")
    raw, curated = (s3.Bucket(stack, n, encryption_key=key, event_bridge_enabled=True) for n in ("Raw", "Curated"))
    GlueEtl(stack, "Etl", name_prefix="crawler", dataset_schema=load_config("dev").dataset("abalone").schema_document(),
            raw_bucket=raw, curated_bucket=curated, encryption_key=key, script=code.GLUE_SCRIPT,
            extra_python_files=code.GLUE_MODULES, crawler=True)
    app.synth()
    return outdir


@pytest.fixture()
def crawler_assembly_copy(crawler_assembly_dir, tmp_path) -> Path:
    target = tmp_path / "crawler-cdk.out"
    shutil.copytree(crawler_assembly_dir, target)
    return target


def _rehearsal(outdir: Path, workdir: Path):
    assembly = Assembly(outdir)
    cloud = Cloud(assembly).start()
    cloud.deploy([assembly.stack("-data")])
    workdir.mkdir(exist_ok=True)
    return Rehearsal(assembly, cloud, workdir, log=lambda _: None), cloud


def _glue_failure(outdir: Path, workdir: Path, raw_files: dict, dataset: str, **kwargs) -> str:
    """The RehearsalError message of the dataset's Glue job run on ``raw_files`` (it must fail)."""
    rh, cloud = _rehearsal(outdir, workdir)
    try:
        with pytest.raises(RehearsalError) as err:
            run_glue_job(rh, raw_files=raw_files, dataset=dataset, **kwargs)
    finally:
        cloud.stop()
    return str(err.value)


def _breast_cancer_sample(tmp_path: Path, header: str = "") -> dict[str, Path]:
    """20 rows of the breast_cancer sample under ``header`` (default: its own)."""
    lines = (REPO / "data" / "breast_cancer.csv").read_text().splitlines()
    path = tmp_path / "bc.csv"
    path.write_text("\n".join([header or lines[0], *lines[1:21]]) + "\n")
    return {"bc.csv": path}


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
        assert list(read_jobs(rh)) == ["abalone", "breast_cancer"]
        summary = run_glue_job(rh, raw_files={"sample.csv": sample_csv}, dataset="abalone")
        counts = summary["etl_counts"]
        assert counts["status"] == "succeeded"
        assert counts["rows_in"] == 21 == counts["rows_curated"] + counts["rows_rejected"]
        assert counts["rows_rejected"] == 1
        assert any(k.endswith(".parquet") and "/ingest_date=" in k for k in summary["curated_keys"])
        assert any(k.endswith(".json") for k in summary["quarantine_keys"])
        assert summary["extra_py_files"][0].endswith(".zip")  # modules shipped as Glue can import them
        assert summary["denials"] == []
        assert summary["crawler"] == {}  # dev declares the table and runs no crawler
        assert summary["table"]["table"] == "mlops_dev.abalone" and summary["table"]["objects_checked"] >= 1
        assert rh.facts["glue"]["abalone"] is summary
        # The bookmark hands over only new objects: a second run with nothing new reads nothing.
        again = run_glue_job(rh, raw_files={}, dataset="abalone", crawl=False)
        assert again["etl_counts"]["rows_in"] == 0 and again["curated_keys"] == []
    finally:
        cloud.stop()


def test_extra_py_module_staged_under_its_hash_name_fails(assembly_copy, tmp_path, sample_csv):
    """(a) --extra-py-files naming the module as a .py asset: Glue stages it as <hash>.py (aws/aws-cdk#20481)."""
    template_path, template = _data_template(assembly_copy)
    job = _one(template, "AWS::Glue::Job", "EtlJob")
    # The module the deployed zip carries, as a file asset named by its hash (what Code.from_asset('x.py') gives).
    assembly = Assembly(assembly_copy)
    stack = assembly.stack("-data")
    zip_uri = read_job(Rehearsal(assembly, None, tmp_path), "-data", "abalone").extra_py_files[0]  # type: ignore[arg-type]
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

    message = _glue_failure(assembly_copy, tmp_path / "work", {"sample.csv": sample_csv}, "abalone")
    assert "import etl_transform" in message and f"{digest}.py" in message and "aws/aws-cdk#20481" in message


def _curated_partition(cloud, job) -> None:
    """What the job leaves for the crawler: one object under a partition directory of the curated prefix (the job
    itself is rehearsed in test_job_runs_from_the_staged_assembly)."""
    bucket, _, prefix = job.arguments["--curated_path"][5:].partition("/")
    cloud.admin("s3").put_object(Bucket=bucket, Key=f"{prefix}ingest_date=2024-01-01/part-0.parquet", Body=b"x")


def test_the_crawler_adds_partitions_to_the_declared_table(crawler_assembly_dir, tmp_path):
    """With a crawler: its role reads the declared table and its location and adds the new partition."""
    rh, cloud = _rehearsal(crawler_assembly_dir, tmp_path / "work")
    try:
        job = read_job(rh, "-data")
        _curated_partition(cloud, job)
        result = rehearse_crawler(rh, job)
        (crawler,) = result.values()
        assert crawler["objects_read"] == 1 and crawler["partitions_added"] == 1
        assert crawler["log_group"].startswith("/aws-glue/crawlers-role/")
        partitions = cloud.admin("glue").get_partitions(DatabaseName="crawler", TableName="abalone")["Partitions"]
        assert [p["Values"] for p in partitions] == [["2024-01-01"]]
        assert rehearse_crawler(rh, job)[next(iter(result))]["partitions_added"] == 0  # known partitions stay
    finally:
        cloud.stop()


def test_crawler_logs_arn_without_a_group_name_fails(crawler_assembly_copy, tmp_path):
    """(b) The crawler role's logs statement names `...:log-group` with no group: its log writes are denied."""
    template_path, template = _data_template(crawler_assembly_copy)
    policy = _one(template, "AWS::IAM::Policy", "CrawlerRole")
    statement = next(s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == "CrawlerLogs")
    statement["Resource"] = {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group"}
    template_path.write_text(json.dumps(template))

    rh, cloud = _rehearsal(crawler_assembly_copy, tmp_path / "work")
    try:
        job = read_job(rh, "-data")
        _curated_partition(cloud, job)
        with pytest.raises(RehearsalError) as err:
            rehearse_crawler(rh, job)
    finally:
        cloud.stop()
    message = str(err.value)
    assert "crawler logs IAM resource `arn:aws:logs:us-east-1:123456789012:log-group` with no name" in message
    assert "AccessDenied" in message or "may not logs:" in message


def test_a_crawler_role_without_the_table_fails(crawler_assembly_copy, tmp_path):
    """The crawler's catalog statement names the database but not the table: GetTable is denied under its role."""
    template_path, template = _data_template(crawler_assembly_copy)
    policy = _one(template, "AWS::IAM::Policy", "CrawlerRole")
    statement = next(s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == "Catalog")
    statement["Resource"] = [r for r in statement["Resource"] if ":table/" not in json.dumps(r)]
    assert len(statement["Resource"]) == 2
    template_path.write_text(json.dumps(template))

    rh, cloud = _rehearsal(crawler_assembly_copy, tmp_path / "work")
    try:
        job = read_job(rh, "-data")
        _curated_partition(cloud, job)
        with pytest.raises(RehearsalError, match="the crawler cannot crawl its targets under its role") as err:
            rehearse_crawler(rh, job)
    finally:
        cloud.stop()
    denial = str(err.value).split("may not glue:GetTable on ", 1)[1]
    assert "arn:aws:glue:us-east-1:123456789012:table/crawler/abalone" in denial


def test_crawl_new_folders_only_with_update_in_database_fails(crawler_assembly_copy, tmp_path, sample_csv):
    """(c) CRAWL_NEW_FOLDERS_ONLY needs UpdateBehavior LOG and DeleteBehavior LOG: Glue rejects the crawler."""
    template_path, template = _data_template(crawler_assembly_copy)
    crawler = _one(template, "AWS::Glue::Crawler")["Properties"]
    crawler["RecrawlPolicy"] = {"RecrawlBehavior": "CRAWL_NEW_FOLDERS_ONLY"}
    crawler["SchemaChangePolicy"] = {"UpdateBehavior": "UPDATE_IN_DATABASE", "DeleteBehavior": "LOG"}
    template_path.write_text(json.dumps(template))

    rh, cloud = _rehearsal(crawler_assembly_copy, tmp_path / "work")
    try:  # CreateCrawler's checks come first: the job does not run
        with pytest.raises(RehearsalError, match="CRAWL_NEW_FOLDERS_ONLY with SchemaChangePolicy UpdateBehavior "
                                                 "UPDATE_IN_DATABASE / DeleteBehavior LOG: Glue requires LOG for both"):
            run_glue_job(rh, raw_files={"sample.csv": sample_csv})
    finally:
        cloud.stop()


def test_a_declared_type_the_job_does_not_write_fails(assembly_copy, tmp_path, sample_csv):
    """The breast_cancer table declares a column of another type than the job writes: queries by the declared schema
    would fail, so the rehearsal does, naming the column and both types."""
    template_path, template = _data_template(assembly_copy)
    table = _one(template, "AWS::Glue::Table", "BreastCancer")["Properties"]["TableInput"]
    column = next(c for c in table["StorageDescriptor"]["Columns"] if c["Name"] == "mean_radius")
    column["Type"] = "float"
    template_path.write_text(json.dumps(template))
    message = _glue_failure(assembly_copy, tmp_path / "work", _breast_cancer_sample(tmp_path), "breast_cancer")
    assert "the declared table mlops_dev.breast_cancer does not describe what Glue job mlops-dev-etl-breast_cancer " \
           "writes" in message
    assert "mean_radius declared float, written double" in message


def test_a_breast_cancer_header_off_the_schema_fails(dev_assembly_dir, tmp_path):
    """The second dataset's job reads its own schema: a header with a renamed column fails the job, naming the
    missing and the unexpected column."""
    header = (REPO / "data" / "breast_cancer.csv").read_text().splitlines()[0]
    assert "mean_texture," in header
    message = _glue_failure(dev_assembly_dir, tmp_path / "work",
                            _breast_cancer_sample(tmp_path, header.replace("mean_texture,", "mean_txture,", 1)),
                            "breast_cancer", crawl=False)
    assert "Glue job mlops-dev-etl-breast_cancer failed" in message
    assert "missing column(s): mean_texture" in message and "mean_txture" in message
