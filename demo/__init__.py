"""`make demo`: the whole platform loop on one machine, against a local stand-in for AWS (moto), no account needed.

Raw upload -> Glue ETL transform (local PySpark) -> model build (the SageMaker pipeline's scripts) -> registry ->
approval -> the deploy pipeline's resolver -> the inference Lambda behind a local HTTP server -> a report.
Run ``python -m demo --help``; the logic is :func:`demo.loop.run_demo`, one call per stage of :mod:`demo.stages`.

Modules: ``loop`` (run_demo), ``stages`` (the seven stages), ``aws`` (the loopback stand-in, fake credentials,
S3 helpers), ``spark`` (a local SparkSession), ``function_url`` (the Lambda behind a local Function URL),
``report`` (metrics.json, plot, summary.md), ``result`` (DemoResult, DemoFailed, the progress output).
"""

from demo.loop import DemoFailed, DemoResult, UnsafeEnvironmentError, run_demo

__all__ = ["DemoFailed", "DemoResult", "UnsafeEnvironmentError", "run_demo"]
