"""The serving process of the endpoint stand-in's container: the framework image's handler loop as a script.

:data:`WORKER` runs as ``python -I -c WORKER '<spec>'`` (see :meth:`rehearsal.endpoint.EndpointStandIn.from_package`):
it imports ``SAGEMAKER_PROGRAM`` from the code directory, calls ``model_fn`` once, answers one JSON line per request
line on stdin (``input_fn`` -> ``predict_fn`` -> ``output_fn``, or ``transform_fn``) on its own protocol channel, and
sends the user code's prints to stderr (the container log).
"""

WORKER = r'''
import base64, importlib, inspect, io, json, os, sys, traceback

spec = json.loads(sys.argv[1])
proto = os.fdopen(os.dup(1), "w")      # the protocol channel; the user code's prints go to stderr (the container log)
os.dup2(2, 1)
sys.stdout = sys.stderr


def reply(obj):
    proto.write(json.dumps(obj) + "\n")
    proto.flush()


class DefaultXGBoostHandler:
    """sagemaker-xgboost-container handler_service.DefaultXGBoostUserModuleInferenceHandler (CSV/JSON only)."""

    @staticmethod
    def model_fn(model_dir):
        raise NotImplementedError("Please provide a model_fn implementation. See documentation for model_fn at "
                                  "https://github.com/aws/sagemaker-python-sdk")

    @staticmethod
    def input_fn(data, content_type):
        import numpy as np
        import xgboost as xgb
        media = (content_type or "").split(";")[0].strip().lower()
        if media == "text/csv":
            return xgb.DMatrix(np.loadtxt(io.StringIO(data), delimiter=",", ndmin=2))
        if media == "application/json":
            return xgb.DMatrix(np.asarray(json.loads(data), dtype=float))
        raise ValueError("content type %r is not supported by the default input_fn" % content_type)

    @staticmethod
    def predict_fn(data, model):
        return model.predict(data, validate_features=False)

    @staticmethod
    def output_fn(prediction, accept):
        import numpy as np
        values = np.asarray(prediction).tolist()
        if accept == "text/csv":
            return "\n".join(str(v) for v in (values if isinstance(values, list) else [values]))
        if accept == "application/json":
            return json.dumps(values)
        raise ValueError("accept type %r is not supported by the default output_fn" % accept)


def call(func, *argv):
    return func(*argv)


try:
    sys.path.insert(0, spec["code_dir"])
    module = importlib.import_module(spec["module"])
    fns = {name: getattr(module, name, None) for name in
           ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn")}
    if fns["transform_fn"] and (fns["input_fn"] or fns["predict_fn"] or fns["output_fn"]):
        raise ValueError("Cannot use transform_fn implementation in conjunction with input_fn, predict_fn, "
                         "and/or output_fn implementation")
    defaults = DefaultXGBoostHandler
    model_fn = fns["model_fn"] or defaults.model_fn
    input_fn = fns["input_fn"] or defaults.input_fn
    predict_fn = fns["predict_fn"] or defaults.predict_fn
    output_fn = fns["output_fn"] or defaults.output_fn
    expected = {"model_fn": 1, "input_fn": 2, "predict_fn": 2, "output_fn": 2, "transform_fn": 4}
    context_parameter = sorted(n for n, f in fns.items() if f is not None
                               and len(inspect.signature(f).parameters) == expected[n] + 1)
    model = call(model_fn, spec["model_dir"])
except BaseException as exc:
    reply({"ready": False, "error": "%s: %s" % (type(exc).__name__, exc), "trace": traceback.format_exc()})
    sys.exit(1)
reply({"ready": True, "user_functions": sorted(n for n, f in fns.items() if f is not None),
       "context_parameter": context_parameter})

for line in sys.stdin:
    request = json.loads(line)
    try:
        body = base64.b64decode(request["body"])
        content_type = request.get("content_type") or ""
        if content_type.split(";")[0].strip().lower() in ("application/json", "text/csv"):
            body = body.decode("utf-8")
        accept = request.get("accept")
        if not accept or accept == "*/*":
            accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json")
        if fns["transform_fn"]:
            result = call(fns["transform_fn"], model, body, content_type, accept)
        else:
            result = call(output_fn, call(predict_fn, call(input_fn, body, content_type), model), accept)
        response_type = accept
        if isinstance(result, tuple):
            result, response_type = result[0], result[1]
        if isinstance(result, str):
            result = result.encode("utf-8")
        elif not isinstance(result, (bytes, bytearray)):
            result = json.dumps(result).encode("utf-8")
        reply({"status": 200, "body": base64.b64encode(bytes(result)).decode(), "content_type": response_type})
    except Exception as exc:
        reply({"status": 500, "body": base64.b64encode(str(exc).encode()).decode(), "content_type": "text/plain",
               "error": "%s: %s" % (type(exc).__name__, exc), "trace": traceback.format_exc()})
'''
