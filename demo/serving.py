"""Stage 6 of :func:`demo.loop.run_demo`: serve one model as its config serves it.

- ``lambda.enabled`` (mode ``model``): the resolved package in the inference Lambda's handler
  (``lambda_src/inference/app.py``, INFERENCE_MODE=model) behind a local ``ThreadingHTTPServer`` that speaks Lambda
  Function URL events (payload 2.0), called over real HTTP: two good requests and four it must refuse.
- ``endpoint.enabled``: the package's own inference code (``code/serve.py`` in model.tar.gz, as the framework
  container's inference toolkit calls it: ``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``) on the same
  batch, in this process; ``make rehearse`` serves it behind a stand-in endpoint. ``endpoint.enabled: false``: no
  endpoint part, as the config says.

Both answers are compared with the evaluate step's ``predictions.csv``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from demo.aws import patched_environ, split_s3_uri
from demo.function_url import FunctionUrlServer, http_call, load_lambda_handler
from demo.result import RequestResult, score

BATCH_ROWS = 5


def serve(run: Any) -> None:
    """Stage 6 for one model (a :class:`demo.stages.Run`): its Lambda and/or its endpoint's handlers, per config."""
    model, result = run.model, run.result
    lambda_mode = model.lambda_.mode if model.lambda_.enabled else None
    result.serving = {"endpoint": bool(model.endpoint.enabled), "lambda": lambda_mode, "demo": []}
    if lambda_mode is None and not model.endpoint.enabled:
        run.say("the config serves this model neither from an endpoint nor from Lambda (batch inference only)")
        return
    model_dir = _fetch_resolved_model(run)
    metadata = json.loads((model_dir / "model_metadata.json").read_text())
    test_rows = decode_rows(run.pipeline.outputs["test"] / "test.csv", metadata, BATCH_ROWS)
    if lambda_mode == "model":
        _serve_lambda(run, model_dir, metadata, test_rows)
        result.serving["demo"].append("lambda")
    elif lambda_mode is not None:
        run.say(f"lambda.mode {lambda_mode}: the function forwards to the endpoint (its handlers below)")
    else:
        run.say("lambda.enabled: false: no inference function")
    if model.endpoint.enabled:
        _call_endpoint_handlers(run, model_dir, test_rows)
        result.serving["demo"].append("endpoint handlers")
    else:
        run.say("endpoint.enabled: false: no endpoint for this model (served from Lambda only, as the config says)")


def _serve_lambda(run: Any, model_dir: Path, metadata: dict[str, Any], test_rows: list[dict[str, Any]]) -> None:
    """Good and bad requests over HTTP to the handler behind a Function URL stand-in."""
    run.lambda_log = run.work / "lambda-logs.jsonl"
    log_stream = run.cleanup.enter_context(open(run.lambda_log, "w", encoding="utf-8"))
    server = _start_function_url(run, model_dir, log_stream)
    for name, body, expected, rows_expected in request_cases(test_rows, metadata):
        status, payload, latency = http_call(server.url, body)
        ok = status == 200 and payload.get("count") == rows_expected if expected == "200" else 400 <= status < 500
        req = RequestResult(name=name, status=status, latency_ms=round(latency, 2), expected=expected, ok=ok,
                            count=payload.get("count"), predictions=payload.get("predictions"),
                            error=payload.get("error"), message=payload.get("message"))
        run.result.requests.append(req)
        detail = (f"predictions [{_shown(req.predictions)}]" if req.predictions is not None
                  else f"{req.error}: {req.message}")
        run.say(f"POST {name:<16} -> {status} in {latency:6.1f} ms ({'ok' if ok else 'UNEXPECTED'}) {detail}")
    batch = run.result.request(f"batch of {len(test_rows)}").predictions
    run.result.batch_matches_evaluation = _matches_evaluation(run, batch)
    run.say(f"batch predictions equal the evaluation step's predictions.csv: {run.result.batch_matches_evaluation}")
    server.stop()
    log_stream.flush()


def _call_endpoint_handlers(run: Any, model_dir: Path, test_rows: list[dict[str, Any]]) -> None:
    """The package's code/serve.py as the endpoint's inference toolkit calls it, on the batch (application/json)."""
    code = model_dir / "code" / "serve.py"
    module_spec = importlib.util.spec_from_file_location(f"demo_endpoint_serve_{run.model.name}", code)
    assert module_spec is not None and module_spec.loader is not None
    serve_py = importlib.util.module_from_spec(module_spec)
    with patched_environ({"SM_MODEL_DIR": str(model_dir)}):
        module_spec.loader.exec_module(serve_py)
        loaded = serve_py.model_fn(str(model_dir))
        data = serve_py.input_fn(json.dumps({"instances": test_rows}), "application/json")
        body, content_type = serve_py.output_fn(serve_py.predict_fn(data, loaded), "application/json")
    predictions = json.loads(body)["predictions"]
    run.result.endpoint_predictions = predictions
    run.result.endpoint_matches_evaluation = _matches_evaluation(run, predictions)
    run.say(f"endpoint handlers (model.tar.gz code/serve.py, {content_type}): predictions [{_shown(predictions)}]; "
            f"equal to the evaluation step's predictions.csv: {run.result.endpoint_matches_evaluation}")


def _shown(predictions: list[Any]) -> str:
    return ", ".join(f"{score(p):.3f}" + (f" (label {p['label']})" if isinstance(p, dict) and "label" in p else "")
                     for p in predictions)


def _matches_evaluation(run: Any, predictions: Optional[list[Any]]) -> Optional[bool]:
    """Whether ``predictions`` (of the first test rows) are the evaluate step's, to 1e-4 relative."""
    if not predictions or run.predictions_csv is None or not run.predictions_csv.is_file():
        return None
    import pandas as pd

    expected = pd.read_csv(run.predictions_csv)["predicted"].head(len(predictions)).tolist()
    return len(expected) == len(predictions) and all(
        abs(score(a) - float(b)) <= 1e-4 * max(1.0, abs(float(b))) for a, b in zip(predictions, expected))


def _fetch_resolved_model(run: Run) -> Path:
    """Download the resolved package's model.tar.gz and extract it (the Lambda's MODEL_LOCAL_PATH)."""
    bucket, key = split_s3_uri(run.result.resolved["model_data_url"])
    serving_dir = run.work / "serving"
    serving_dir.mkdir()
    tarball = serving_dir / "model.tar.gz"
    run.s3.download_file(bucket, key, str(tarball))
    model_dir = serving_dir / "model"
    shutil.unpack_archive(str(tarball), str(model_dir), format="gztar", filter="data")
    run.say(f"model {run.result.resolved['model_data_url']} extracted to MODEL_LOCAL_PATH")
    return model_dir


def _start_function_url(run: Run, model_dir: Path, log_stream: Any) -> FunctionUrlServer:
    """The handler loaded with the model in its environment, served on 127.0.0.1 (both undone by run.cleanup)."""
    run.cleanup.enter_context(patched_environ({
        "INFERENCE_MODE": "model",
        "MODEL_LOCAL_PATH": str(model_dir),
        "MODEL_VERSION": run.result.package_arn,
        "MAX_BATCH_ROWS": str(run.model.lambda_.max_batch_rows),
        "MODEL_S3_URI": None, "ENDPOINT_NAME": None,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": os.environ.get("POWERTOOLS_SERVICE_NAME", "inference"),
        "POWERTOOLS_METRICS_NAMESPACE": os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "MLOpsPlatform/Inference"),
    }))
    handler, runtime = load_lambda_handler(log_stream)
    run.cleanup.callback(runtime.reset)
    server = FunctionUrlServer(handler, run.config.names.serving_resource(run.model.name, "demo"), log_stream,
                               getattr(runtime, "logger", None)).start()
    run.cleanup.callback(server.stop)
    run.result.serving_url = server.url
    run.say(f"inference handler (lambda_src/inference/app.py, INFERENCE_MODE=model) behind a Function URL "
            f"stand-in at {server.url}")
    return server


def decode_rows(test_csv: Path, metadata: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """Request rows (raw feature values) back from the encoded test split: one-hot -> category, numeric as is."""
    import pandas as pd

    frame = pd.read_csv(test_csv).head(limit)
    rows = []
    for _, record in frame.iterrows():
        row: dict[str, Any] = {}
        for feature in metadata["features"]:
            name = feature["name"]
            if feature["type"] == "categorical":
                hot = [c for c in feature["categories"] if float(record[f"{name}_{c}"]) == 1.0]
                row[name] = hot[0] if hot else feature["categories"][0]
            else:
                row[name] = float(record[name])
        rows.append(row)
    return rows


def request_cases(test_rows: list[dict[str, Any]], metadata: dict[str, Any]
                  ) -> list[tuple[str, bytes, str, Optional[int]]]:
    """(name, body, expected status class, rows expected): two good requests, four the function must refuse."""
    missing = dict(test_rows[0])
    missing.pop(metadata["features"][-1]["name"])
    wrong_type = dict(test_rows[0])
    numeric = next(f["name"] for f in metadata["features"] if f["type"] == "numeric")
    wrong_type[numeric] = "not-a-number"
    return [
        ("one row", json.dumps({"instance": test_rows[0]}).encode(), "200", 1),
        (f"batch of {len(test_rows)}", json.dumps({"instances": test_rows}).encode(), "200", len(test_rows)),
        ("malformed JSON", b'{"instances": [{"sex": "M", ', "4xx", None),
        ("missing feature", json.dumps({"instances": [missing]}).encode(), "4xx", None),
        ("wrong type", json.dumps({"instances": [wrong_type]}).encode(), "4xx", None),
        ("empty batch", json.dumps({"instances": []}).encode(), "4xx", None),
    ]
