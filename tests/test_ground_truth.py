"""Ground-truth ingestion (lambda_src/ground_truth): uploads of inference_id,label rows become Model Monitor
ground-truth records under yyyy/mm/dd/hh/, every rejected row is kept with its reason and counted, IDs that match no
captured request are reported, and nothing makes the handler raise. AWS is moto's."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lambda_src" / "ground_truth"))

import ground_truth_handler as handler_module  # noqa: E402
import ground_truth_logic as logic  # noqa: E402

from platform_config.names import Names  # noqa: E402

REGION = "us-east-1"
RAW = "mlops-dev-raw"
ARTIFACTS = "mlops-dev-artifacts"
UPLOAD = Names.ground_truth_upload_prefix("abalone", "staging")
GT = Names.model_monitor_ground_truth_prefix("abalone", "staging")
QUARANTINE = Names.ground_truth_quarantine_prefix("abalone", "staging")
CAPTURE = Names.data_capture_prefix("abalone", "staging")
ENDPOINT = "mlops-dev-abalone-staging"
TIME = "2024-05-01T13:05:09Z"


def env(**overrides) -> dict[str, str]:
    values = {"UPLOAD_PREFIX": UPLOAD, "OUTPUT_BUCKET": ARTIFACTS, "GROUND_TRUTH_PREFIX": GT,
              "QUARANTINE_PREFIX": QUARANTINE, "PROBLEM_TYPE": "regression", "MONITOR_NAME": ENDPOINT}
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def event(key: str, *, bucket: str = RAW, time: str = TIME, **obj) -> dict:
    return {"version": "0", "id": "e1", "detail-type": "Object Created", "source": "aws.s3",
            "account": "123456789012", "time": time, "region": REGION, "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {"version": "0", "bucket": {"name": bucket},
                       "object": {"key": key, "size": obj.pop("size", 10), "etag": "abc", **obj},
                       "reason": "PutObject"}}


@pytest.fixture
def aws(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (RAW, ARTIFACTS):
            s3.create_bucket(Bucket=bucket)
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        topic = sns.create_topic(Name="alarms")["TopicArn"]
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        handler_module._clients.clear()
        yield s3, sns, sqs, topic, queue
        handler_module._clients.clear()


def run(aws, key: str, body: str | bytes, **env_overrides) -> dict:
    s3, sns, _, topic, _ = aws
    s3.put_object(Bucket=RAW, Key=key, Body=body.encode() if isinstance(body, str) else body)
    return handler_module.handler(event(key), env=env(ALARM_TOPIC_ARN=topic, **env_overrides))


def lines(s3, key: str) -> list[dict]:
    return [json.loads(line) for line in s3.get_object(Bucket=ARTIFACTS, Key=key)["Body"].read().splitlines()]


def key_of(uri: str) -> str:
    return uri.split(f"s3://{ARTIFACTS}/", 1)[1]


def messages(aws) -> list[dict]:
    _, _, sqs, _, queue = aws
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in got]


# --------------------------------------------------------------------------------------------------------------------
# Happy paths
# --------------------------------------------------------------------------------------------------------------------
def test_csv_upload_becomes_model_monitor_ground_truth_under_the_upload_hour(aws):
    s3 = aws[0]
    result = run(aws, f"{UPLOAD}labels.csv", "inference_id,label\nid-1,9\nid-2, 10.5\n\n")
    assert result["outcome"] == "ingested" and result["counts"]["rows"] == 2 and result["counts"]["written"] == 2
    gt_key = key_of(result["ground_truth"])
    assert gt_key.startswith(f"{GT}2024/05/01/13/labels-") and gt_key.endswith(".jsonl")
    assert lines(s3, gt_key) == [
        {"groundTruthData": {"data": "9.0", "encoding": "CSV"}, "eventMetadata": {"eventId": "id-1"},
         "eventVersion": "0"},
        {"groundTruthData": {"data": "10.5", "encoding": "CSV"}, "eventMetadata": {"eventId": "id-2"},
         "eventVersion": "0"},
    ]
    report = json.loads(s3.get_object(Bucket=ARTIFACTS, Key=key_of(result["report"]))["Body"].read())
    assert report["counts"] == {"rows": 2, "written": 2, "rejected": 0, "malformed_row": 0,
                                "missing_inference_id": 0, "invalid_inference_id": 0,
                                "duplicate_inference_id": 0, "invalid_label": 0}
    assert "rejected" not in result and result["notified"] is False and messages(aws) == []


def test_jsonl_binary_labels(aws):
    s3 = aws[0]
    body = "\n".join(json.dumps(r) for r in [
        {"inference_id": "a", "label": 1}, {"inference_id": "b", "label": "0"}, {"inference_id": "c", "label": True},
        {"inference_id": "d", "label": 0.0}])
    result = run(aws, f"{UPLOAD}2024/labels.jsonl", body, PROBLEM_TYPE="binary_classification")
    assert result["counts"]["written"] == 4 and result["format"] == "jsonl"
    assert [r["groundTruthData"]["data"] for r in lines(s3, key_of(result["ground_truth"]))] == ["1", "0", "1", "0"]


def test_a_retried_event_overwrites_what_it_wrote(aws):
    s3 = aws[0]
    first = run(aws, f"{UPLOAD}labels.csv", "id-1,9\n")
    again = handler_module.handler(event(f"{UPLOAD}labels.csv"), env=env())
    assert first["ground_truth"] == again["ground_truth"]
    assert len(s3.list_objects_v2(Bucket=ARTIFACTS, Prefix=GT)["Contents"]) == 1


# --------------------------------------------------------------------------------------------------------------------
# Bad rows: quarantined with their reason, counted, published
# --------------------------------------------------------------------------------------------------------------------
def test_bad_rows_are_quarantined_counted_and_published(aws):
    s3 = aws[0]
    body = "\n".join([
        "inference_id,label", "ok-1,3", ",4", "   ,5", "x" * 65 + ",6", "tab\there,7", "ok-2,abc", "ok-3,nan", "ok-1,8",
        "a,b,c", "ok-4,",
    ])
    result = run(aws, f"{UPLOAD}labels.csv", body)
    assert result["counts"] == {"rows": 10, "written": 1, "rejected": 9, "malformed_row": 1,
                                "missing_inference_id": 2, "invalid_inference_id": 2,
                                "duplicate_inference_id": 1, "invalid_label": 3}
    rejected = lines(s3, key_of(result["rejected"]))
    assert key_of(result["rejected"]).startswith(f"{QUARANTINE}2024/05/01/13/")
    assert [(r["line"], r["reason"]) for r in rejected] == [
        (3, "missing_inference_id"), (4, "missing_inference_id"), (5, "invalid_inference_id"),
        (6, "invalid_inference_id"), (7, "invalid_label"), (8, "invalid_label"), (9, "duplicate_inference_id"),
        (10, "malformed_row"), (11, "invalid_label")]
    assert rejected[6]["row"] == "ok-1,8" and "regression labels are numbers" in rejected[4]["detail"]
    (note,) = messages(aws)
    assert note["Subject"] == f"Ground truth {ENDPOINT}: 9 of 10 rows rejected"
    assert "missing_inference_id 2" in note["Message"] and "line 3: missing_inference_id" in note["Message"]
    assert result["rejected"] in note["Message"] and result["notified"] is True


def test_jsonl_rows_without_an_inference_id_or_label(aws):
    body = "\n".join([json.dumps({"label": 1}), json.dumps({"inference_id": "a"}), "[1]", "{bad",
                      json.dumps({"inference_id": "b", "label": 2, "extra": 1}), json.dumps({"inference_id": 5,
                                                                                              "label": 1})])
    result = run(aws, f"{UPLOAD}labels.jsonl", body)
    counts = result["counts"]
    assert (counts["missing_inference_id"], counts["invalid_label"], counts["malformed_row"],
            counts["invalid_inference_id"], counts["written"]) == (1, 1, 3, 1, 0)
    assert result["outcome"] == "nothing_written" and "ground_truth" not in result
    (note,) = messages(aws)
    assert note["Subject"] == f"Ground truth {ENDPOINT}: 6 of 6 rows rejected"


def test_binary_labels_must_be_0_or_1(aws):
    result = run(aws, f"{UPLOAD}l.csv", "a,2\nb,0.5\nc,yes\nd,1\n", PROBLEM_TYPE="binary_classification")
    assert result["counts"]["invalid_label"] == 3 and result["counts"]["written"] == 1


@pytest.mark.parametrize("body, problem", [
    (b"\xff\xfe\x00a", "not UTF-8"),
    (b"", "has no rows"),
    (b"inference_id,label\n", "has no rows"),
])
def test_unusable_files_are_reported(aws, body, problem):
    result = run(aws, f"{UPLOAD}bad.csv", body)
    assert problem in result["problem"]
    (note,) = messages(aws)
    assert problem in note["Message"] and str(result.get("upload")) in note["Message"]


def test_too_large_and_missing_objects_are_reported(aws):
    s3, _, _, topic, _ = aws
    result = handler_module.handler(event(f"{UPLOAD}big.csv", size=200), env=env(ALARM_TOPIC_ARN=topic,
                                                                                  MAX_UPLOAD_BYTES="100"))
    assert result["outcome"] == "invalid_input" and "more than the 100 allowed" in result["problem"]
    result = handler_module.handler(event(f"{UPLOAD}gone.csv"), env=env(ALARM_TOPIC_ARN=topic))
    assert result["outcome"] == "error" and "NoSuchKey" in result["problem"]
    assert [m["Subject"] for m in messages(aws)] == [f"Ground truth {ENDPOINT}: upload not ingested"] * 2


def test_url_encoded_keys_are_found(aws):
    s3 = aws[0]
    s3.put_object(Bucket=RAW, Key=f"{UPLOAD}my labels.csv", Body=b"a,1\n")
    result = handler_module.handler(event(f"{UPLOAD}my+labels.csv"), env=env())
    assert result["counts"]["written"] == 1


def test_objects_outside_the_prefix_and_folders_are_ignored(aws):
    assert handler_module.handler(event("other/x.csv"), env=env())["outcome"] == "ignored"
    assert handler_module.handler(event(f"{UPLOAD}sub/"), env=env())["outcome"] == "ignored"


@pytest.mark.parametrize("bad_event", [None, {}, {"source": "aws.s3", "detail-type": "Object Created"},
                                       event(f"{UPLOAD}x.csv", time="yesterday")])
def test_bad_events_never_raise(aws, bad_event):
    result = handler_module.handler(bad_event, env=env(ALARM_TOPIC_ARN=aws[3]))
    assert result["outcome"] == "invalid_input"
    assert messages(aws)[0]["Subject"] == f"Ground truth {ENDPOINT}: upload not ingested"


@pytest.mark.parametrize("overrides, message", [
    ({"PROBLEM_TYPE": "multiclass"}, "PROBLEM_TYPE must be one of regression, binary_classification"),
    ({"OUTPUT_BUCKET": None}, "OUTPUT_BUCKET is not set"),
    ({"UPLOAD_PREFIX": "ground-truth"}, "UPLOAD_PREFIX must be a key prefix ending in '/'"),
    ({"GROUND_TRUTH_PREFIX": UPLOAD + "out/"}, "overlaps UPLOAD_PREFIX"),
    ({"CAPTURE_LOOKBACK_HOURS": "-1"}, "CAPTURE_LOOKBACK_HOURS must be a whole number >= 0"),
])
def test_bad_configuration_is_reported(aws, overrides, message):
    result = handler_module.handler(event(f"{UPLOAD}x.csv"), env=env(ALARM_TOPIC_ARN=aws[3], **overrides))
    assert result["outcome"] == "configuration_error" and message in result["problem"]
    assert len(messages(aws)) == 1


def test_an_unexpected_failure_is_reported_not_raised(aws, monkeypatch):
    monkeypatch.setattr(logic, "ingest", lambda *a, **k: 1 / 0)
    result = run(aws, f"{UPLOAD}x.csv", "a,1\n")
    assert result["outcome"] == "error" and "ZeroDivisionError" in result["problem"]


# --------------------------------------------------------------------------------------------------------------------
# Captured predictions: IDs matching no capture, and multi-row requests
# --------------------------------------------------------------------------------------------------------------------
def capture_line(inference_id: str | None, output: str = "9.5\n") -> str:
    meta = {"eventId": "00000000-0000-0000-0000-000000000000", "inferenceTime": "2024-05-01T12:10:00Z"}
    if inference_id:
        meta["inferenceId"] = inference_id
    return json.dumps({"captureData": {
        "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": "1,0,0,0.5", "encoding": "CSV"},
        "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT", "data": output, "encoding": "CSV"}},
        "eventMetadata": meta, "eventVersion": "0"})


def test_ids_matching_no_capture_are_counted_and_published(aws):
    s3 = aws[0]
    hour_key = f"{CAPTURE}{ENDPOINT}/AllTraffic/2024/05/01/12/capture.jsonl"
    s3.put_object(Bucket=ARTIFACTS, Key=hour_key, Body="\n".join(
        [capture_line("id-1"), capture_line("id-2", "9.5\n10.5\n"), capture_line(None)]).encode())
    old = f"{CAPTURE}{ENDPOINT}/AllTraffic/2024/04/01/12/capture.jsonl"  # outside the lookback
    s3.put_object(Bucket=ARTIFACTS, Key=old, Body=capture_line("id-3").encode())
    result = run(aws, f"{UPLOAD}labels.csv", "id-1,9\nid-2,10\nid-3,11\nid-4,12\n",
                 CAPTURE_PREFIX=CAPTURE, CAPTURE_LOOKBACK_HOURS="24")
    captures = result["captures"]
    assert captures["complete"] is True and captures["hours"] == 25 and captures["capture_files"] == 1
    assert (captures["unmatched_inference_id"], captures["unmatched_sample"]) == (2, ["id-3", "id-4"])
    assert (captures["multi_row_request"], captures["multi_row_sample"]) == (1, ["id-2"])
    assert result["counts"]["written"] == 4  # written anyway: a capture may be older than the lookback
    (note,) = messages(aws)
    assert "2 inference IDs match no captured request" in note["Message"]
    assert "1 match a multi-row request" in note["Message"]


def test_the_capture_check_stops_at_its_byte_budget(aws):
    s3 = aws[0]
    for n in range(3):
        s3.put_object(Bucket=ARTIFACTS, Key=f"{CAPTURE}{ENDPOINT}/AllTraffic/2024/05/01/13/c{n}.jsonl",
                      Body=capture_line(f"id-{n}").encode())
    size = len(capture_line("id-0"))
    result = run(aws, f"{UPLOAD}labels.csv", "id-0,1\n", CAPTURE_PREFIX=CAPTURE, CAPTURE_LOOKBACK_HOURS="1",
                 MAX_CAPTURE_BYTES=str(size + 1))
    assert result["captures"]["complete"] is False and result["captures"]["capture_files"] == 1
    assert result["captures"]["unmatched_inference_id"] == 0


def test_all_matched_captures_need_no_notification(aws):
    s3 = aws[0]
    s3.put_object(Bucket=ARTIFACTS, Key=f"{CAPTURE}{ENDPOINT}/AllTraffic/2024/05/01/13/c.jsonl",
                  Body=capture_line("id-1").encode())
    result = run(aws, f"{UPLOAD}labels.csv", "id-1,1\n", CAPTURE_PREFIX=CAPTURE, CAPTURE_LOOKBACK_HOURS="1")
    assert result["captures"]["unmatched_inference_id"] == 0 and messages(aws) == []


# --------------------------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------------------------
def test_capture_hours_and_hour_path_are_utc():
    when = datetime(2024, 1, 1, 0, 30, tzinfo=timezone.utc)
    assert logic.capture_hours(when, 1) == ["2024/01/01/00/", "2023/12/31/23/"]


def test_output_names_differ_per_object_version():
    upload = logic.parse_event(event(f"{UPLOAD}a b.csv", **{"version-id": "v1"}))
    other = logic.parse_event(event(f"{UPLOAD}a b.csv", **{"version-id": "v2"}))
    assert logic.output_stem(upload).startswith("a_b-") and logic.output_stem(upload) != logic.output_stem(other)


def test_the_subject_fits_sns():
    settings = logic.Settings.from_env(env(MONITOR_NAME="m" * 120))
    note = logic.notification(settings, {"counts": {"rows": 1, "rejected": 1}})
    assert len(note.subject) <= 100
