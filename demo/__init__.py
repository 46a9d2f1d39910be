"""`make demo`: the whole platform loop on one machine, against a local stand-in for AWS (moto), no account needed.

Raw upload -> Glue ETL transform (local PySpark) -> model build (the SageMaker pipeline's scripts) -> registry ->
approval -> the deploy pipeline's resolver -> the inference Lambda behind a local HTTP server -> a report.
Run ``python -m demo --help``; the logic is :func:`demo.loop.run_demo`.
"""

from demo.loop import DemoFailed, DemoResult, UnsafeEnvironmentError, run_demo

__all__ = ["DemoFailed", "DemoResult", "UnsafeEnvironmentError", "run_demo"]
