"""The inference Lambda (lambda_src/inference): both modes, both HTTP event shapes, every bad input, S3 loading.

Models are real: trained on the shipped abalone data by the project's local pipeline (sagemaker_steps.local_runner),
in the docs/CONTRACTS.md artifact format. Predictions are checked against plain xgboost on an encoding written
independently here (inference_fixtures.reference_encode).
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tarfile

os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"  # before the handler module is imported (also in the fixtures)

import boto3  # noqa: E402
import pytest  # noqa: E402
from botocore.exceptions import ReadTimeoutError  # noqa: E402
from botocore.response import StreamingBody  # noqa: E402
from botocore.stub import Stubber  # noqa: E402
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from moto import mock_aws  # noqa: E402

import inference_fixtures as fx  # noqa: E402
from inference_runtime import handler as runtime  # noqa: E402
from inference_runtime.config import Settings  # noqa: E402
from inference_runtime.errors import ConfigurationError  # noqa: E402
from inference_runtime.features import FLOAT32_MAX  # noqa: E402

MODEL_VERSION = "arn:aws:sagemaker:us-east-1:123456789012:model-package/abalone/3"
ENDPOINT = "abalone-staging"
MAX_ROWS = 25


# --------------------------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    return fx.curate(tmp_path_factory.mktemp("curated"))


@pytest.fixture(scope="module")
def regression_model(curated, tmp_path_factory):
    return fx.train_model(curated, tmp_path_factory.mktemp("regression"), "regression")


@pytest.fixture(scope="module")
def binary_model(curated, tmp_path_factory):
    return fx.train_model(curated, tmp_path_factory.mktemp("binary"), "binary_classification")


@pytest.fixture(autouse=True)
def _fresh_runtime():
    runtime.reset()
    yield
    runtime.reset()


@pytest.fixture
def regression(regression_model):
    """The handler serving the regression model from its local model.tar.gz (the local-demo path)."""
    runtime.init(Settings(model_local_path=str(regression_model.model_artifact), model_version=MODEL_VERSION,
                          max_batch_rows=MAX_ROWS))
    return regression_model


@pytest.fixture
def aws_credentials(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)


def invoke(event):
    return fx.parse_response(runtime.handler(event, fx.LambdaContext()))


def post(body, **kwargs):
    return invoke(fx.function_url_event(body, **kwargs))


def emf_records(text: str) -> list[dict]:
    records = []
    for line in text.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            records.append(json.loads(line))
    return records


# --------------------------------------------------------------------------------------------------------------------
# Model mode: happy paths
# --------------------------------------------------------------------------------------------------------------------
def test_one_row_matches_xgboost(regression):
    status, body, headers = post({"instance": fx.ROW})
    assert status == 200, body
    assert body["count"] == 1 and body["model_version"] == MODEL_VERSION
    [prediction] = body["predictions"]
    assert isinstance(prediction, float)
    [expected] = fx.reference_predict(regression.model_dir, [fx.ROW])
    assert prediction == pytest.approx(expected, rel=1e-6)
    assert headers["X-Request-Id"]


def test_batch_matches_xgboost_and_is_a_sane_model(regression):
    pairs = fx.abalone_rows(MAX_ROWS)
    rows = [row for row, _ in pairs]
    status, body, _ = post({"instances": rows})
    assert status == 200, body
    assert body["count"] == len(rows) == len(body["predictions"])
    assert body["predictions"] == pytest.approx(fx.reference_predict(regression.model_dir, rows), rel=1e-6)
    rmse = math.sqrt(sum((p - rings) ** 2 for p, (_, rings) in zip(body["predictions"], pairs)) / len(pairs))
    assert rmse < 3.5  # rings range 1-29: a trained model, not noise


def test_integers_are_numbers_and_row_key_order_is_irrelevant(regression):
    row = {k: fx.ROW[k] for k in reversed(list(fx.ROW))} | {"length": 1}
    status, body, _ = post({"instances": [row]})
    assert status == 200, body
    assert body["predictions"] == pytest.approx(fx.reference_predict(regression.model_dir, [row]), rel=1e-6)


def test_binary_classification_model(binary_model):
    runtime.init(Settings(model_local_path=str(binary_model.model_dir), model_version="v7"))
    pairs = fx.abalone_rows(200)
    rows = [row for row, _ in pairs]
    status, body, _ = post({"instances": rows})
    assert status == 200, body
    expected = fx.reference_predict(binary_model.model_dir, rows)
    for prediction, p in zip(body["predictions"], expected):
        assert set(prediction) == {"probability", "label"}
        assert 0.0 <= prediction["probability"] <= 1.0
        assert prediction["probability"] == pytest.approx(p, rel=1e-6)
        assert prediction["label"] == (1 if prediction["probability"] >= 0.5 else 0)
    labels = [p["label"] for p in body["predictions"]]
    truth = [1 if rings >= 10 else 0 for _, rings in pairs]
    assert 0 < sum(labels) < len(labels)
    assert sum(a == b for a, b in zip(labels, truth)) / len(truth) > 0.7


# --------------------------------------------------------------------------------------------------------------------
# Event shapes
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make_event", [fx.function_url_event, fx.rest_api_event], ids=["function-url-v2", "rest-v1"])
@pytest.mark.parametrize("is_base64", [False, True], ids=["text", "base64"])
def test_event_shapes(regression, make_event, is_base64):
    status, body, _ = invoke(make_event({"instances": [fx.ROW, fx.ROW]}, is_base64=is_base64))
    assert status == 200, body
    assert body["count"] == 2


def test_rest_event_with_null_headers_and_no_content_type(regression):
    event = fx.rest_api_event({"instance": fx.ROW})
    event["headers"] = None
    event["multiValueHeaders"] = None
    assert invoke(event)[0] == 200
    assert invoke(fx.function_url_event({"instance": fx.ROW}, content_type=None))[0] == 200


def test_content_type_with_charset_and_json_suffix(regression):
    assert post({"instance": fx.ROW}, content_type="application/json; charset=utf-8")[0] == 200
    assert post({"instance": fx.ROW}, content_type="application/vnd.api+json")[0] == 200


def test_direct_invocation_payload(regression):
    status, body, _ = fx.parse_response(runtime.handler({"instance": fx.ROW}, fx.LambdaContext()))
    assert status == 200 and body["count"] == 1


# --------------------------------------------------------------------------------------------------------------------
# Bad requests: exact status, code and an actionable message
# --------------------------------------------------------------------------------------------------------------------
def _row(**changes):
    row = dict(fx.ROW)
    for key, value in changes.items():
        if value is _DROP:
            row.pop(key)
        else:
            row[key] = value
    return row


_DROP = object()

BAD_BODIES = [
    # (id, raw body, status, code, words the message must contain)
    ("malformed-json", '{"instances": [', 400, "malformed_json", ["not valid JSON"]),
    ("trailing-garbage", '{"instance": {}} x', 400, "malformed_json", ["not valid JSON"]),
    ("empty-body", "", 400, "empty_body", ["empty"]),
    ("blank-body", "  \n", 400, "empty_body", ["empty"]),
    ("array-body", "[1, 2]", 400, "invalid_body", ["JSON object", "array"]),
    ("number-body", "42", 400, "invalid_body", ["JSON object", "number"]),
    ("string-body", '"hello"', 400, "invalid_body", ["JSON object", "string"]),
    ("null-body", "null", 400, "invalid_body", ["JSON object", "null"]),
    ("neither", "{}", 400, "missing_input", ["instances", "instance"]),
    ("both", json.dumps({"instance": fx.ROW, "instances": [fx.ROW]}), 400, "ambiguous_input", ["not both"]),
    ("unknown-top-level", json.dumps({"rows": [fx.ROW]}), 400, "unknown_field", ["rows"]),
    ("instances-not-a-list", json.dumps({"instances": "not-a-list"}), 400, "invalid_body", ["array", "string"]),
    ("instances-null", json.dumps({"instances": None}), 400, "invalid_body", ["array", "null"]),
    ("instance-null", json.dumps({"instance": None}), 400, "invalid_body", ["instance", "null"]),
    ("long-unknown-key", json.dumps({"instance": _row(**{"k" * 10_000: 1})}), 400, "extra_features", ["kkk..."]),
    ("instance-not-an-object", json.dumps({"instance": [1, 2]}), 400, "invalid_body", ["instance", "array"]),
    ("row-not-an-object", json.dumps({"instances": [fx.ROW, 3]}), 400, "invalid_body", ["instances[1]", "number"]),
    ("empty-batch", json.dumps({"instances": []}), 400, "empty_batch", ["at least one row"]),
    ("too-many-rows", json.dumps({"instances": [fx.ROW] * (MAX_ROWS + 1)}), 413, "batch_too_large",
     [str(MAX_ROWS + 1), str(MAX_ROWS)]),
    ("missing-features", json.dumps({"instance": _row(height=_DROP, diameter=_DROP)}), 400, "missing_features",
     ["diameter", "height"]),
    ("missing-in-third-row", json.dumps({"instances": [fx.ROW, fx.ROW, _row(sex=_DROP)]}), 400, "missing_features",
     ["instances[2]", "sex"]),
    ("extra-features", json.dumps({"instance": _row(rings=9, colour="red")}), 400, "extra_features",
     ["colour", "rings"]),
    ("string-for-number", json.dumps({"instance": _row(length="0.455")}), 400, "wrong_type",
     ["length", "number", "string"]),
    ("bool-for-number", json.dumps({"instance": _row(height=True)}), 400, "wrong_type",
     ["height", "number", "boolean"]),
    ("null-for-number", json.dumps({"instance": _row(shell_weight=None)}), 400, "wrong_type",
     ["shell_weight", "null"]),
    ("list-for-number", json.dumps({"instance": _row(length=[0.4])}), 400, "wrong_type", ["length", "array"]),
    ("number-for-category", json.dumps({"instance": _row(sex=1)}), 400, "wrong_type", ["sex", "string", "F, I, M"]),
    ("unknown-category", json.dumps({"instance": _row(sex="X")}), 400, "unknown_category", ["sex", "X", "F, I, M"]),
    ("category-is-case-sensitive", json.dumps({"instance": _row(sex="m")}), 400, "unknown_category", ["F, I, M"]),
    ("nan-token", '{"instance": {"sex": "M", "length": NaN}}', 400, "non_finite_number", ["NaN"]),
    ("infinity-token", json.dumps({"instance": _row(length=float("inf"))}), 400, "non_finite_number", ["Infinity"]),
    ("minus-infinity-token", json.dumps({"instance": _row(length=float("-inf"))}), 400, "non_finite_number",
     ["Infinity"]),
    ("overflowing-float", '{"instance": ' + json.dumps(fx.ROW).replace("0.455", "1e400") + "}", 400,
     "non_finite_number", ["length", "finite"]),
    ("float32-overflow", json.dumps({"instance": _row(length=1e39)}), 400, "number_out_of_range", ["length"]),
    ("huge-integer", json.dumps({"instance": _row(length=10**400)}), 400, "number_out_of_range", ["length"]),
    ("too-many-digits", '{"instance": {"length": ' + "1" * 5000 + "}}", 400, "malformed_json", ["not valid JSON"]),
    ("deep-nesting", "[" * 200_000 + "]" * 200_000, 400, "malformed_json", ["nested too deeply"]),
]


@pytest.mark.parametrize("raw, status, code, words", [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES])
@pytest.mark.parametrize("make_event", [fx.function_url_event, fx.rest_api_event], ids=["v2", "v1"])
def test_bad_bodies(regression, make_event, raw, status, code, words):
    got_status, body, _ = invoke(make_event(raw))
    assert (got_status, body["error"]) == (status, code), body
    assert set(body) == {"error", "message"}
    for word in words:
        assert word in body["message"], (word, body["message"])


def test_missing_body(regression):
    event = fx.function_url_event(None)
    assert "body" not in event
    assert invoke(event)[1]["error"] == "empty_body"
    assert invoke(fx.rest_api_event(None))[1]["error"] == "empty_body"


def test_invalid_base64(regression):
    event = fx.function_url_event("x")
    event["isBase64Encoded"] = True
    event["body"] = "not base64!!"
    status, body, _ = invoke(event)
    assert (status, body["error"]) == (400, "malformed_json")
    assert "base64" in body["message"]


def test_body_not_utf8(regression):
    status, body, _ = invoke(fx.function_url_event(b'{"instance": "\xff\xfe\xfa"}', is_base64=True))
    assert (status, body["error"]) == (400, "malformed_json")


def test_missing_features_message_lists_what_the_model_needs(regression):
    status, body, _ = post({"instance": {"sex": "F"}})
    assert (status, body["error"]) == (400, "missing_features")
    for name in fx.NUMERIC_FEATURES:
        assert name in body["message"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
@pytest.mark.parametrize("make_event", [fx.function_url_event, fx.rest_api_event], ids=["v2", "v1"])
def test_only_post(regression, make_event, method):
    status, body, headers = invoke(make_event({"instance": fx.ROW}, method=method))
    assert (status, body["error"]) == (405, "method_not_allowed")
    assert headers["Allow"] == "POST"
    assert method in body["message"]


@pytest.mark.parametrize("content_type", ["text/csv", "application/x-www-form-urlencoded", "application/xml"])
def test_unsupported_content_type(regression, content_type):
    status, body, _ = post({"instance": fx.ROW}, content_type=content_type)
    assert (status, body["error"]) == (415, "unsupported_media_type")
    assert "application/json" in body["message"]


def test_max_batch_rows_from_the_environment(regression_model, monkeypatch):
    monkeypatch.setenv("MODEL_LOCAL_PATH", str(regression_model.model_dir))
    monkeypatch.setenv("MAX_BATCH_ROWS", "3")
    monkeypatch.setenv("MODEL_VERSION", "from-env")
    status, body, _ = post({"instances": [fx.ROW] * 3})  # the first request loads from the environment
    assert (status, body["model_version"]) == (200, "from-env")
    status, body, _ = post({"instances": [fx.ROW] * 4})
    assert (status, body["error"]) == (413, "batch_too_large")


# --------------------------------------------------------------------------------------------------------------------
# Server faults: 5xx with a request id, never an exception out of the handler
# --------------------------------------------------------------------------------------------------------------------
def test_unexpected_failure_is_a_500_with_request_id(regression, monkeypatch):
    def explode(rows):
        raise RuntimeError("boom")

    monkeypatch.setattr(runtime.get_predictor(), "predict", explode)
    context = fx.LambdaContext()
    status, body, headers = fx.parse_response(runtime.handler(fx.function_url_event({"instance": fx.ROW}), context))
    assert status == 500
    assert body == {"error": "internal_error", "message": body["message"], "request_id": context.aws_request_id}
    assert headers["X-Request-Id"] == context.aws_request_id
    assert "boom" not in body["message"]  # internals stay in the logs


def test_no_model_configured_is_a_500_not_an_exception(monkeypatch):
    status, body, _ = post({"instance": fx.ROW})
    assert (status, body["error"]) == (500, "model_unavailable")
    assert body["request_id"]


def test_failed_load_is_retried_later(regression_model, monkeypatch, tmp_path):
    monkeypatch.setenv("MODEL_LOCAL_PATH", str(tmp_path / "not-there"))
    assert post({"instance": fx.ROW})[1]["error"] == "model_unavailable"
    monkeypatch.setenv("MODEL_LOCAL_PATH", str(regression_model.model_dir))
    assert post({"instance": fx.ROW})[1]["error"] == "model_unavailable"  # within INIT_RETRY_SECONDS: no retry
    monkeypatch.setattr(runtime, "_next_retry_at", 0.0)  # ... time passes
    assert post({"instance": fx.ROW})[0] == 200


def test_handler_survives_a_missing_context(regression):
    response = runtime.handler(fx.function_url_event({"instance": fx.ROW}), None)
    assert response["statusCode"] == 500
    assert json.loads(response["body"])["error"] == "internal_error"


# --------------------------------------------------------------------------------------------------------------------
# Metrics (EMF on stdout)
# --------------------------------------------------------------------------------------------------------------------
def test_metrics_success_and_bad_request(regression, capsys):
    capsys.readouterr()
    post({"instances": [fx.ROW] * 3})
    post({"instance": _row(sex="X")})
    records = [r for r in emf_records(capsys.readouterr().out) if "ColdStart" not in r]
    success, bad = records
    directive = success["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == (os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or runtime.DEFAULT_NAMESPACE)
    assert {m["Name"] for m in directive["Metrics"]} == {"Predictions", "RowsPredicted", "PredictLatency"}
    assert success["RowsPredicted"] == [3.0] and success["Predictions"] == [1.0]
    assert success["mode"] == "model" and success["model_version"] == MODEL_VERSION
    bad_directive = bad["_aws"]["CloudWatchMetrics"][0]
    assert [m["Name"] for m in bad_directive["Metrics"]] == ["BadRequests"]
    assert "reason" in bad_directive["Dimensions"][0]
    assert bad["reason"] == "unknown_category"


# --------------------------------------------------------------------------------------------------------------------
# Tracing enabled (as in Lambda with active tracing): subsegments reach the X-Ray daemon address
# --------------------------------------------------------------------------------------------------------------------
TRACED_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import app
class Context:
    function_name = "mlops-inference"; memory_limit_in_mb = 1769; aws_request_id = "req-traced"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mlops-inference"
print(json.dumps(app.handler(json.loads(sys.argv[2]), Context())))
"""


def test_tracing_enabled_emits_subsegments(regression_model):
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(1)  # the child sent everything before exiting: wait only for the socket buffer
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_TRACE", "MODEL_", "INFERENCE_"))}
    env.update(LAMBDA_TASK_ROOT=str(fx.HANDLER_DIR), AWS_LAMBDA_FUNCTION_NAME="mlops-inference",
               AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{daemon.getsockname()[1]}",
               _X_AMZN_TRACE_ID="Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
               MODEL_LOCAL_PATH=str(regression_model.model_dir), POWERTOOLS_LOG_LEVEL="WARNING")
    event = fx.function_url_event({"instance": fx.ROW})
    done = subprocess.run([sys.executable, "-c", TRACED_CHILD, str(fx.HANDLER_DIR), json.dumps(event)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    response = json.loads(done.stdout.strip().splitlines()[-1])
    assert response["statusCode"] == 200, response
    subsegments = {}
    try:
        while True:
            header, _, document = daemon.recv(65536).decode().partition("\n")
            assert json.loads(header) == {"format": "json", "version": 1}
            subsegment = json.loads(document)
            subsegments[subsegment["name"]] = subsegment
    except socket.timeout:
        pass
    finally:
        daemon.close()
    assert {"## _instrumented_handler", "## inference_runtime.handler._predict"} <= set(subsegments), subsegments
    handler_segment = subsegments["## _instrumented_handler"]
    assert handler_segment["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert handler_segment["annotations"]["ColdStart"] is True


# --------------------------------------------------------------------------------------------------------------------
# Properties: no JSON-ish input yields a 5xx or an exception
# --------------------------------------------------------------------------------------------------------------------
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
feature_names = st.sampled_from([*fx.ROW, "rings", "Sex", ""])
fuzzed_value = st.one_of(
    json_values,
    st.sampled_from(["F", "I", "M", "m", "", "FM"]),
    st.floats(min_value=-1e40, max_value=1e40),
    st.integers(min_value=-(10**400), max_value=10**400),
)
fuzzed_rows = st.builds(
    lambda base, drops, extra: {**{k: v for k, v in base.items() if k not in drops}, **extra},
    st.fixed_dictionaries({name: fuzzed_value for name in fx.ROW}),
    st.sets(st.sampled_from(list(fx.ROW)), max_size=3),
    st.dictionaries(feature_names, fuzzed_value, max_size=2),
)
PROPERTY = settings(max_examples=int(os.environ.get("INFERENCE_FUZZ_EXAMPLES", "150")), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _assert_well_formed(response):
    status, body, _ = fx.parse_response(response)
    assert status < 500, body
    if status == 200:
        assert body["count"] == len(body["predictions"]) >= 1
        assert all(isinstance(p, float) and math.isfinite(p) for p in body["predictions"])
    else:
        assert set(body) == {"error", "message"} and body["message"]
    return status, body


@PROPERTY
@given(payload=json_values)
def test_property_any_json_body(regression, payload):
    _assert_well_formed(runtime.handler(fx.function_url_event(json.dumps(payload)), fx.LambdaContext()))


@PROPERTY
@given(text=st.text(max_size=200), is_base64=st.booleans(), v1=st.booleans())
def test_property_any_text_body(regression, text, is_base64, v1):
    make = fx.rest_api_event if v1 else fx.function_url_event
    _assert_well_formed(runtime.handler(make(text, is_base64=is_base64), fx.LambdaContext()))


@PROPERTY
@given(raw=st.binary(max_size=200))
def test_property_any_bytes_base64(regression, raw):
    _assert_well_formed(runtime.handler(fx.function_url_event(raw, is_base64=True), fx.LambdaContext()))


def _valid_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= FLOAT32_MAX  # False for NaN; compares huge ints exactly


@PROPERTY
@given(rows=st.lists(fuzzed_rows, min_size=1, max_size=4), single=st.booleans())
def test_property_fuzzed_rows(regression, rows, single):
    payload = {"instance": rows[0]} if single else {"instances": rows}
    status, body = _assert_well_formed(
        runtime.handler(fx.function_url_event(json.dumps(payload)), fx.LambdaContext()))
    sent = rows[:1] if single else rows
    all_valid = all(
        set(row) == set(fx.ROW) and row["sex"] in ("F", "I", "M")
        and all(_valid_number(row[n]) for n in fx.NUMERIC_FEATURES)
        for row in sent
    )
    assert (status == 200) == all_valid, body


@PROPERTY
@given(row=st.fixed_dictionaries({
    "sex": st.sampled_from(["F", "I", "M"]),
    **{name: st.floats(min_value=-3e38, max_value=3e38) | st.integers(-(2**63), 2**63)
       for name in fx.NUMERIC_FEATURES},
}))
def test_property_valid_rows_always_predict(regression, row):
    status, body = _assert_well_formed(
        runtime.handler(fx.function_url_event(json.dumps({"instance": row})), fx.LambdaContext()))
    assert status == 200, body


@PROPERTY
@given(event=json_values)
def test_property_any_event(regression, event):
    response = runtime.handler(event, fx.LambdaContext())
    assert response["statusCode"] < 500, response


# --------------------------------------------------------------------------------------------------------------------
# Loading from S3 (moto)
# --------------------------------------------------------------------------------------------------------------------
def test_model_from_s3(regression_model, aws_credentials):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="models")
        s3.upload_file(str(regression_model.model_artifact), "models", "abalone/run-1/output/model.tar.gz")
        runtime.init(Settings(model_s3_uri="s3://models/abalone/run-1/output/model.tar.gz",
                              model_version=MODEL_VERSION))
        status, body, _ = post({"instances": [fx.ROW]})
    assert status == 200, body
    assert body["predictions"] == pytest.approx(fx.reference_predict(regression_model.model_dir, [fx.ROW]), rel=1e-6)


def test_model_from_s3_via_environment_at_first_request(regression_model, aws_credentials, monkeypatch):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="models")
        s3.upload_file(str(regression_model.model_artifact), "models", "m/model.tar.gz")
        monkeypatch.setenv("MODEL_S3_URI", "s3://models/m/model.tar.gz")
        monkeypatch.setenv("MODEL_VERSION", MODEL_VERSION)
        status, body, _ = post({"instance": fx.ROW})
    assert (status, body["model_version"]) == (200, MODEL_VERSION)


def test_missing_s3_object_is_a_configuration_error(aws_credentials):
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="models")
        with pytest.raises(ConfigurationError, match="s3://models/missing/model.tar.gz"):
            runtime.init(Settings(model_s3_uri="s3://models/missing/model.tar.gz"))


# --------------------------------------------------------------------------------------------------------------------
# Artifact checks at load
# --------------------------------------------------------------------------------------------------------------------
def _copy_model(model_dir, tmp_path, **metadata_changes):
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    metadata = fx.load_metadata(target) | metadata_changes
    (target / "model_metadata.json").write_text(json.dumps(metadata))
    return target


def test_metadata_encoded_columns_must_match_features(regression_model, tmp_path):
    metadata = fx.load_metadata(regression_model.model_dir)
    bad = _copy_model(regression_model.model_dir, tmp_path, encoded_columns=metadata["encoded_columns"][:-1])
    with pytest.raises(ConfigurationError, match="encoded_columns"):
        runtime.init(Settings(model_local_path=str(bad)))


def test_metadata_must_match_the_model(regression_model, tmp_path):
    metadata = fx.load_metadata(regression_model.model_dir)
    features = metadata["features"] + [{"name": "age", "type": "numeric"}]
    bad = _copy_model(regression_model.model_dir, tmp_path, features=features,
                      encoded_columns=metadata["encoded_columns"] + ["age"])
    with pytest.raises(ConfigurationError, match="features"):
        runtime.init(Settings(model_local_path=str(bad)))


def test_sklearn_artifacts_need_the_endpoint(regression_model, tmp_path):
    bad = _copy_model(regression_model.model_dir, tmp_path, framework="sklearn")
    with pytest.raises(ConfigurationError, match="endpoint_proxy"):
        runtime.init(Settings(model_local_path=str(bad)))


def test_metadata_driven_validation(regression_model, tmp_path):
    """Another feature set: the validation follows model_metadata.json, nothing is hard-coded."""
    metadata = fx.load_metadata(regression_model.model_dir)
    renamed = _copy_model(regression_model.model_dir, tmp_path,
                          features=[{"name": "gender", "type": "categorical", "categories": ["F", "I", "M"]},
                                    *metadata["features"][1:]],
                          encoded_columns=["gender_F", "gender_I", "gender_M", *metadata["encoded_columns"][3:]])
    runtime.init(Settings(model_local_path=str(renamed)))  # the trained booster carries no feature names
    row = {("gender" if k == "sex" else k): v for k, v in fx.ROW.items()}
    status, body, _ = post({"instance": row})
    assert status == 200, body
    assert body["predictions"] == pytest.approx(fx.reference_predict(regression_model.model_dir, [fx.ROW]), rel=1e-6)
    assert post({"instance": fx.ROW})[1]["error"] == "missing_features"


# --------------------------------------------------------------------------------------------------------------------
# endpoint_proxy mode (botocore Stubber on the real sagemaker-runtime client)
# --------------------------------------------------------------------------------------------------------------------
@pytest.fixture
def proxy(regression_model, aws_credentials):
    runtime.init(Settings(mode="endpoint_proxy", endpoint_name=ENDPOINT,
                          metadata_local_path=str(regression_model.model_artifact), model_version=MODEL_VERSION,
                          endpoint_read_timeout_seconds=4, endpoint_max_attempts=3))
    client = runtime.get_predictor().client
    with Stubber(client) as stubber:
        yield stubber, fx.load_metadata(regression_model.model_dir)
        stubber.assert_no_pending_responses()


def _csv(rows, metadata) -> bytes:
    return "\n".join(",".join(repr(v) for v in fx.reference_encode(r, metadata)) for r in rows).encode()


def _answer(text: str, content_type: str = "text/csv"):
    raw = text.encode()
    return {"Body": StreamingBody(io.BytesIO(raw), len(raw)), "ContentType": content_type,
            "InvokedProductionVariant": "AllTraffic"}


def test_proxy_client_configuration(proxy):
    config = runtime.get_predictor().client.meta.config
    assert (config.read_timeout, config.connect_timeout) == (4, 2.0)
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}
    assert runtime.get_predictor().client.meta.service_model.service_name == "sagemaker-runtime"


@pytest.mark.parametrize("answer", ["9.5\n10.25", "9.5,10.25", "9.5\n10.25\n"], ids=["lines", "commas", "trailing"])
def test_proxy_sends_encoded_csv_and_parses_csv(proxy, answer):
    stubber, metadata = proxy
    rows = [fx.ROW, _row(sex="F", length=0.53)]
    stubber.add_response("invoke_endpoint", _answer(answer), expected_params={
        "EndpointName": ENDPOINT, "ContentType": "text/csv", "Accept": "text/csv", "Body": _csv(rows, metadata),
        "InferenceId": "order-42"})
    status, body, headers = post({"instances": rows}, headers={"x-inference-id": "order-42"})
    assert status == 200, body
    assert body == {"predictions": [9.5, 10.25], "model_version": MODEL_VERSION, "count": 2,
                    "inference_id": "order-42"}
    assert headers["X-Inference-Id"] == "order-42"


def test_proxy_parses_json_answers(proxy):
    stubber, metadata = proxy
    stubber.add_response("invoke_endpoint", _answer('{"predictions": [{"score": 7.25}]}', "application/json"))
    status, body, _ = post({"instance": fx.ROW})
    assert (status, body["predictions"]) == (200, [7.25])


def test_proxy_binary_classification(binary_model, aws_credentials):
    runtime.init(Settings(mode="endpoint_proxy", endpoint_name=ENDPOINT,
                          metadata_local_path=str(binary_model.model_dir / "model_metadata.json")))
    with Stubber(runtime.get_predictor().client) as stubber:
        stubber.add_response("invoke_endpoint", _answer("0.2\n0.5\n0.9"))
        status, body, _ = post({"instances": [fx.ROW] * 3})
    assert status == 200, body
    assert body["predictions"] == [{"probability": 0.2, "label": 0}, {"probability": 0.5, "label": 1},
                                   {"probability": 0.9, "label": 1}]
    assert body["model_version"] == "unknown"


def test_proxy_validates_before_calling(proxy):
    # No stubbed response: a call would fail the Stubber. Bad rows never reach the endpoint.
    assert post({"instance": _row(sex="X")})[1]["error"] == "unknown_category"
    assert post({"instances": [fx.ROW] * (MAX_ROWS + 1_000)})[0] == 413


@pytest.mark.parametrize(
    "error_code, http_status, fields, status, code, retry_after",
    [
        ("ModelError", 424, {"OriginalStatusCode": 400, "OriginalMessage": "Loading csv data failed",
                             "LogStreamArn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/x"},
         502, "model_error", False),
        ("ThrottlingException", 400, {}, 503, "upstream_throttled", True),
        ("ServiceUnavailable", 503, {}, 503, "upstream_unavailable", True),
        ("ModelNotReadyException", 429, {}, 503, "upstream_unavailable", True),
        ("ValidationError", 400, {}, 502, "endpoint_unavailable", False),
        ("InternalFailure", 500, {}, 502, "upstream_error", False),
        ("AccessDeniedException", 403, {}, 502, "upstream_error", False),
    ],
)
def test_proxy_error_mapping(proxy, error_code, http_status, fields, status, code, retry_after):
    stubber, _ = proxy
    stubber.add_client_error("invoke_endpoint", service_error_code=error_code,
                             service_message=f"{error_code} from SageMaker", http_status_code=http_status,
                             modeled_fields=fields or None)
    context = fx.LambdaContext()
    got_status, body, headers = fx.parse_response(
        runtime.handler(fx.function_url_event({"instance": fx.ROW}), context))
    assert (got_status, body["error"]) == (status, code), body
    assert body["request_id"] == context.aws_request_id
    assert ("Retry-After" in headers) is retry_after
    if error_code == "ModelError":
        assert "Loading csv data failed" in body["message"] and "400" in body["message"]


@pytest.mark.parametrize("answer", ["1.0", "1.0\n2.0\nthree", "", "NaN\n1", '{"predictions": "x"}'])
def test_proxy_unusable_answers_are_502(proxy, answer):
    stubber, _ = proxy
    stubber.add_response("invoke_endpoint", _answer(answer))
    status, body, _ = post({"instances": [fx.ROW, fx.ROW]})
    assert (status, body["error"]) == (502, "bad_upstream_response"), body


def test_proxy_timeout_is_504(proxy, monkeypatch):
    def timeout(**kwargs):
        raise ReadTimeoutError(endpoint_url=f"https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/{ENDPOINT}")

    monkeypatch.setattr(runtime.get_predictor().client, "invoke_endpoint", timeout)
    status, body, _ = post({"instance": fx.ROW})
    assert (status, body["error"]) == (504, "upstream_timeout")


def test_proxy_metadata_from_s3(regression_model, aws_credentials):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="models")
        s3.upload_file(str(regression_model.model_dir / "model_metadata.json"), "models", "m/model_metadata.json")
        s3.upload_file(str(regression_model.model_artifact), "models", "m/model.tar.gz")
        for uri in ("s3://models/m/model_metadata.json", "s3://models/m/model.tar.gz"):
            rt = runtime.init(Settings(mode="endpoint_proxy", endpoint_name=ENDPOINT, metadata_s3_uri=uri))
            assert rt.predictor.spec.feature_names == tuple(fx.ROW)


def test_proxy_needs_its_settings():
    with pytest.raises(ConfigurationError, match="ENDPOINT_NAME"):
        runtime.init(Settings(mode="endpoint_proxy", metadata_local_path="x"))
    with pytest.raises(ConfigurationError, match="MODEL_METADATA"):
        runtime.init(Settings(mode="endpoint_proxy", endpoint_name=ENDPOINT))


# --------------------------------------------------------------------------------------------------------------------
# Settings from the environment
# --------------------------------------------------------------------------------------------------------------------
def test_settings_from_env():
    s = Settings.from_env({"INFERENCE_MODE": "endpoint_proxy", "ENDPOINT_NAME": "ep", "MAX_BATCH_ROWS": "7",
                           "MODEL_METADATA_S3_URI": "s3://b/k.json", "ENDPOINT_READ_TIMEOUT_SECONDS": "2.5"})
    assert (s.mode, s.endpoint_name, s.max_batch_rows, s.endpoint_read_timeout_seconds) == (
        "endpoint_proxy", "ep", 7, 2.5)
    assert Settings.from_env({}).model_version == "unknown"
    for bad in ({"INFERENCE_MODE": "sagemaker"}, {"MAX_BATCH_ROWS": "0"}, {"MAX_BATCH_ROWS": "lots"},
                {"ENDPOINT_READ_TIMEOUT_SECONDS": "-1"}):
        with pytest.raises(ConfigurationError):
            Settings.from_env(bad)


def test_tarball_with_path_traversal_is_refused(tmp_path):
    archive = tmp_path / "model.tar.gz"
    payload = b"{}"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../../escape.json")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(ConfigurationError, match="extract"):
        runtime.init(Settings(model_local_path=str(archive)))


# --------------------------------------------------------------------------------------------------------------------
# Inference IDs: the key that joins ground truth with the endpoint's captured predictions
# --------------------------------------------------------------------------------------------------------------------
def test_proxy_passes_the_body_inference_id_to_invoke_endpoint(proxy):
    stubber, metadata = proxy
    stubber.add_response("invoke_endpoint", _answer("9.5"), expected_params={
        "EndpointName": ENDPOINT, "ContentType": "text/csv", "Accept": "text/csv", "Body": _csv([fx.ROW], metadata),
        "InferenceId": "a1:b2/c3 d4"})
    status, body, headers = post({"instance": fx.ROW, "inference_id": "a1:b2/c3 d4"})
    assert (status, body["inference_id"], headers["X-Inference-Id"]) == (200, "a1:b2/c3 d4", "a1:b2/c3 d4")


def test_proxy_generates_an_inference_id_when_none_is_given(proxy):
    stubber, _ = proxy
    sent = []
    stubber.add_response("invoke_endpoint", _answer("9.5"))
    stubber.add_response("invoke_endpoint", _answer("9.5"))
    client = runtime.get_predictor().client
    client.meta.events.register("provide-client-params.sagemaker-runtime.InvokeEndpoint",
                                lambda params, **_: sent.append(params.get("InferenceId")))
    first = post({"instance": fx.ROW})[1]["inference_id"]
    second = invoke({"instance": fx.ROW})[1]["inference_id"]  # a direct invocation too
    assert sent == [first, second] and first != second
    assert all(len(i) == 36 and i.count("-") == 4 for i in (first, second))  # UUIDs


def test_rest_api_header_and_same_body_id_agree(proxy):
    stubber, metadata = proxy
    stubber.add_response("invoke_endpoint", _answer("9.5"), expected_params={
        "EndpointName": ENDPOINT, "ContentType": "text/csv", "Accept": "text/csv", "Body": _csv([fx.ROW], metadata),
        "InferenceId": "x"})
    status, body, _ = invoke(fx.rest_api_event({"instance": fx.ROW, "inference_id": "x"},
                                              headers={"X-Inference-ID": "x"}))
    assert (status, body["inference_id"]) == (200, "x")


def test_model_mode_returns_an_inference_id_too(regression):
    status, body, headers = post({"instance": fx.ROW}, headers={"x-inference-id": "row-7"})
    assert (status, body["inference_id"], headers["X-Inference-Id"]) == (200, "row-7", "row-7")
    status, body, _ = post({"instance": fx.ROW})
    assert status == 200 and len(body["inference_id"]) == 36


@pytest.mark.parametrize("body_id, header, code, words", [
    ("", None, "invalid_inference_id", ['"inference_id" must be 1-64 printable ASCII', "got 0 characters"]),
    ("x" * 65, None, "invalid_inference_id", ["got 65 characters"]),
    (" lead", None, "invalid_inference_id", ["space at either end"]),
    ("trail ", None, "invalid_inference_id", ["space at either end"]),
    ("tab\there", None, "invalid_inference_id", ["outside printable ASCII"]),
    ("caf\u00e9", None, "invalid_inference_id", ["outside printable ASCII"]),
    (42, None, "invalid_inference_id", ['"inference_id" must be a string']),
    (None, "x" * 65, "invalid_inference_id", ["the X-Inference-Id header must be", "got 65 characters"]),
    ("a", "b", "ambiguous_inference_id", ["header and \"inference_id\" differ"]),
])
def test_bad_inference_ids_are_400_with_a_reason(proxy, body_id, header, code, words):
    # No stubbed response: a bad ID never reaches the endpoint.
    payload = {"instance": fx.ROW} if body_id is None else {"instance": fx.ROW, "inference_id": body_id}
    status, body, _ = post(payload, headers={"x-inference-id": header} if header is not None else None)
    assert (status, body["error"]) == (400, code), body
    for word in words:
        assert word in body["message"]


def test_the_64_character_printable_limit_is_inclusive(regression):
    longest = "~" + "".join(chr(c) for c in range(0x21, 0x7F))[:62] + "!"
    assert len(longest) == 64
    status, body, _ = post({"instance": fx.ROW, "inference_id": longest})
    assert (status, body["inference_id"]) == (200, longest)
