"""`make demo`: the whole platform loop on one machine, against a local stand-in for AWS (moto), no account needed,
for every model of the config, each on its own dataset.

Raw upload -> Glue ETL transform (local PySpark) -> model build (the SageMaker pipeline's scripts) -> registry ->
approval -> the deploy pipeline's resolver -> serving as the config says (the inference Lambda behind a local HTTP
server, the endpoint's handlers) -> a report. Run ``python -m demo --help``; the logic is
:func:`demo.loop.run_demo`, one call per stage of :mod:`demo.stages` (stage 6: :mod:`demo.serving`).

Modules: ``loop`` (run_demo), ``stages`` (the stages), ``serving`` (stage 6), ``aws`` (the loopback stand-in, fake
credentials, S3 helpers), ``spark`` (a local SparkSession), ``function_url`` (the Lambda behind a local Function
URL), ``report`` (metrics.json, plots, summary.md), ``result`` (DemoRun, DemoResult, DemoFailed, the progress
output).
"""

from demo.loop import DemoFailed, DemoResult, DemoRun, UnsafeEnvironmentError, run_demo

__all__ = ["DemoFailed", "DemoResult", "DemoRun", "UnsafeEnvironmentError", "run_demo"]
