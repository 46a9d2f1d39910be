"""Inference runtime of the model-in-Lambda / endpoint-proxy function.

The Lambda entry point is ``app.handler`` (``lambda_src/inference/app.py``); everything it needs lives in this package
so that tests and benchmarks can import it under a name that cannot clash with other functions' ``app`` modules.
"""
