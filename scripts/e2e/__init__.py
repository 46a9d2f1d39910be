"""End-to-end run of the platform against a sandbox AWS account: deploy, feed, build, approve, serve, report, tear down.

    python -m scripts.e2e --env dev --yes [--teardown none|stacks|all] [--timeout-minutes 90]
        [--report-dir e2e-report] [--model NAME] [--region REGION] [--rows 5] [--keep-on-failure] [--allow-prod]

It runs, with the credentials of the environment (AWS_PROFILE etc.), what a user does by hand:

1. **Preflight**: refuses without ``--yes``; prints the caller identity (STS); refuses when the config pins another
   ``account`` or ``region``, when the environment is named like production (unless ``--allow-prod``), when the
   platform pipeline owns the environment, or when the account/region is not CDK-bootstrapped.
2. **Deploy**: ``cdk deploy --all -c env=<env> --require-approval never --outputs-file <report-dir>/cdk-outputs.json``
   (shared, data and model stacks; no serving stack: those come from the model's deploy pipeline).
3. **Upload**: ``data/abalone.csv`` (UCI Abalone, CC BY 4.0, see data/README.md) to
   ``s3://<raw bucket>/<dataset>/e2e-<run id>.csv``; the bucket comes from the export ``<prefix>-lake-raw-name``.
4. **Waits**, each bounded by ``--timeout-minutes``, polling with backoff, printing progress, failing with one line:
   the Glue job run started after the upload (SUCCEEDED; FAILED/ERROR/TIMEOUT/STOPPED stop with its ErrorMessage);
   the SageMaker pipeline execution started after that run (Succeeded; Failed stops with its FailureReason and the
   failed step); the package it registered (PendingManualApproval), which is then **approved**; the deploy pipeline
   execution started by the approval reaching "staging ready" (``Smoke-<first stage>`` Succeeded, or the manual
   approval before the last stage InProgress).
5. **Invoke** the first stage (staging) with the first ``--rows`` rows of the sample data: the SigV4-signed Function
   URL and/or InvokeEndpoint, through ``cicd_scripts.smoke_test``'s helpers.
6. **Report**: ``<report-dir>/e2e-report.json`` and ``e2e-report.md``: timings per stage, package ARN, the metric from
   the package's ModelMetrics, predictions next to the actual values, what teardown removed.
7. **Teardown** (``--teardown``, default ``stacks``; also after a failed stage unless ``--keep-on-failure``):
   ``stacks`` stops what is still running (the Glue run, the pipeline execution, the deploy pipeline execution),
   destroys the serving stacks the deploy pipeline created (``cdk destroy --exclusively -c serving=all ...``), then
   every stack of the app (``cdk destroy --all --force``). ``all`` also removes what the stacks retain: it lists the
   stacks' resources (ListStackResources) *before* destroying them, then empties (every object version and delete
   marker) and deletes the buckets, deletes the log groups, the model packages and their groups, and schedules the
   KMS keys for deletion (7 days, KMS's minimum), listing each in the report. ``none`` leaves everything.

Exit codes: 0 success; 1 a stage failed (or teardown left something); 2 refused (preflight, arguments);
3 a wait timed out.

Designed for tests: :class:`E2ERun` takes a boto3 session factory, ``run_cdk(args) -> outputs`` and a clock/sleep,
so ``tests/runtime/test_e2e.py`` drives the whole orchestration against moto.

Modules: ``cli`` (arguments, ``main``), ``run`` (:class:`E2ERun`: plumbing, preflight, the run and its finish),
``loop`` (deploy through invoke), ``teardown``, ``report`` (options and the report), ``common`` (errors, names, the
CDK CLI, helpers).
"""

from scripts.e2e.cli import main
from scripts.e2e.common import E2EError, Names, Refused, WaitTimeout, bootstrap_qualifier, cdk_cli
from scripts.e2e.report import Options, Report, StageTiming
from scripts.e2e.run import E2ERun

__all__ = ["E2EError", "E2ERun", "Names", "Options", "Refused", "Report", "StageTiming", "WaitTimeout",
           "bootstrap_qualifier", "cdk_cli", "main"]
