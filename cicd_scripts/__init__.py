"""Scripts the model CI/CD pipelines run in CodeBuild.

Each module is a command (``python -m cicd_scripts.<module> --help``) and exposes ``main(argv) -> int`` so tests call it
in-process. They need only boto3/botocore (preinstalled in the CodeBuild standard images) and the standard library;
``deploy_serving`` additionally runs the CDK CLI (``npx cdk``) that the repository pins.

- ``start_pipeline``: model build CI: upsert (optional) and start the SageMaker pipeline for a git commit.
- ``resolve_approved_package``: model deploy CD: the latest Approved model package of a group.
- ``deploy_serving``: ``cdk deploy`` of one stage's serving stack with that package, and its outputs.
- ``smoke_test``: call the deployed endpoint and/or Lambda Function URL and check the predictions.

Exit codes shared by all scripts: 0 success, 1 failure (an AWS call refused, a failed execution, a failed check),
2 invalid arguments or input (and, for ``resolve_approved_package``, "no approved package"), 3 timed out /
superseded (see each module).
"""
