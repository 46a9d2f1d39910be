"""Lambda entry point of the inference function: handler ``app.handler`` (Python 3.12).

The function code asset is this directory (no third-party packages here: they come from the layer built by
scripts/build_lambda_deps.sh). The implementation lives in the ``inference_runtime`` package; see
inference_runtime/handler.py for the lifecycle and inference_runtime/config.py for the environment variables.
"""

from inference_runtime.handler import get_predictor, get_runtime, handler, init, reset

__all__ = ["get_predictor", "get_runtime", "handler", "init", "reset"]
