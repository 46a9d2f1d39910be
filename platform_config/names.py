"""Every name another system relies on, in one place: stack names, exports, physical names, S3 layout, CDK context.

Standard library only: the stacks, the constructs (through props), the CodeBuild scripts, the e2e script and the demo
all import it, and CodeBuild installs nothing but boto3. A rename here changes every layer at once; nothing else builds
one of these names from a format string.

    names = Names("mlops", "dev")
    names.stack("data")                    # mlops-dev-data
    names.serving_stack("abalone", "prod") # mlops-dev-serving-abalone-prod
    names.lake_export("raw", "name")       # mlops-dev-lake-raw-name

Only resources that another system finds by name have a physical name here (the pipeline a rule starts, the package
group a deploy resolves, the function the smoke test calls, the Glue job a rule matches, ...); CloudFormation names
the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

#: CDK context key that selects serving stacks: ``all``, or ``<model>/<stage>`` (comma-separated for several).
SERVING_CONTEXT = "serving"
#: CDK context key that picks ``config/<name>.yaml``.
ENV_CONTEXT = "env"
#: Lambda's limit on function names; the longest physical name the platform derives.
MAX_FUNCTION_NAME = 64
#: SageMaker's limit on endpoint names.
MAX_ENDPOINT_NAME = 63

LAKE_ZONES = ("raw", "curated", "artifacts")

#: Interface VPC endpoints (``com.amazonaws.<region>.<name>``) a VPC the platform creates gets by default: the services
#: its in-VPC components call. Who calls which: platform_config.network (the config default) explains each.
VPC_INTERFACE_ENDPOINTS = (
    "sagemaker.api",
    "sagemaker.runtime",
    "ecr.api",
    "ecr.dkr",
    "logs",
    "monitoring",
    "sts",
    "kms",
    "events",
    "glue",
    "sns",
)
#: Attributes of the shared stack's network exports (:meth:`Names.network_export`).
NETWORK_EXPORTS = ("vpc-id", "subnet-ids", "availability-zones", "workload-sg-id", "glue-sg-id")

# The parts names are made of: (regular expression, maximum length). The config schema validates with these, so
# every derived name fits the limits of the services that carry it.
NAME_PATTERN = r"^[a-z][a-z0-9-]*[a-z0-9]$"
SHORT_NAME_PATTERN = r"^[a-z][a-z0-9]*$"
PARTS: dict[str, tuple[str, int]] = {
    "project": (NAME_PATTERN, 16),
    "environment": (SHORT_NAME_PATTERN, 8),
    "model": (NAME_PATTERN, 20),
    "stage": (SHORT_NAME_PATTERN, 10),
}


@dataclass(frozen=True)
class Names:
    """The names of one environment (``<project>-<environment>``)."""

    project: str
    environment: str

    @property
    def prefix(self) -> str:
        return f"{self.project}-{self.environment}"

    @property
    def glue_database(self) -> str:
        """The environment's Glue Data Catalog database (curated tables, batch predictions): the prefix with ``_``
        for ``-`` (Athena reads ``-`` in a database name only quoted)."""
        return self.prefix.replace("-", "_")

    # --- stacks --------------------------------------------------------------------------------------------------
    def stack(self, part: str) -> str:
        """``shared``, ``data``, ``workstation``, ``pipeline``: ``<prefix>-<part>``."""
        return f"{self.prefix}-{part}"

    def model_stack(self, model: str) -> str:
        return f"{self.prefix}-model-{model}"

    def serving_stack(self, model: str, stage: str) -> str:
        return f"{self.prefix}-serving-{model}-{stage}"

    @staticmethod
    def serving_context(model: str, stage: str) -> str:
        """The ``-c serving=`` value that makes the app synthesize one serving stack."""
        return f"{model}/{stage}"

    # --- exports -------------------------------------------------------------------------------------------------
    def lake_export(self, zone: str, attribute: str) -> str:
        """``zone``: raw, curated, artifacts or key; ``attribute``: arn or name."""
        return f"{self.prefix}-lake-{zone}-{attribute}"

    def network_export(self, attribute: str) -> str:
        """The shared stack's network, when it creates the VPC: ``attribute`` is one of :data:`NETWORK_EXPORTS`
        (``vpc-id``; ``subnet-ids`` and ``availability-zones``, comma-separated, in the same order; ``workload-sg-id``,
        ``glue-sg-id``)."""
        if attribute not in NETWORK_EXPORTS:
            raise ValueError(f"unknown network export '{attribute}'; use one of {NETWORK_EXPORTS}")
        return f"{self.prefix}-network-{attribute}"

    @property
    def boundary_export(self) -> str:
        """The ARN of the permissions boundary the shared stack defines (``iam.permissions_boundary: create``)."""
        return f"{self.prefix}-permissions-boundary-arn"

    @property
    def alarm_topic_export(self) -> str:
        return f"{self.prefix}-alarm-topic-arn"

    @property
    def alarm_topic_key_export(self) -> str:
        return f"{self.prefix}-alarm-topic-key-arn"

    # --- physical names --------------------------------------------------------------------------------------------
    def etl_job(self, dataset: str) -> str:
        """The Glue job (the model stacks' EventBridge rules match it by name)."""
        return f"{self.prefix}-etl-{dataset}"

    def model_resource(self, model: str) -> str:
        """The model's SageMaker pipeline and model package group."""
        return f"{self.prefix}-{model}"

    def serving_resource(self, model: str, stage: str) -> str:
        """The stage's endpoint and inference function (the smoke test calls them by name)."""
        return f"{self.prefix}-{model}-{stage}"

    def build_pipeline(self, model: str) -> str:
        """The model's build CI: its CodePipeline and its CodeBuild project."""
        return f"{self.model_resource(model)}-build"

    def deploy_pipeline(self, model: str) -> str:
        return f"{self.model_resource(model)}-deploy"

    def resolve_project(self, model: str) -> str:
        """The deploy CD's CodeBuild project that resolves the approved package."""
        return f"{self.model_resource(model)}-deploy-resolve"

    def deploy_project(self, model: str, stage: str) -> str:
        """The deploy CD's CodeBuild project that deploys the stage's serving stack."""
        return f"{self.model_resource(model)}-deploy-{stage}"

    def smoke_project(self, model: str, stage: str) -> str:
        """The deploy CD's CodeBuild project that smoke-tests the stage."""
        return f"{self.model_resource(model)}-smoke-{stage}"

    @property
    def alarm_topic(self) -> str:
        return f"{self.prefix}-alarms"

    @property
    def platform_pipeline(self) -> str:
        return f"{self.prefix}-platform"

    @property
    def boundary_path(self) -> str:
        """The IAM path of the permissions boundary the platform defines (``iam.permissions_boundary: create``):
        the boundary policy is the only policy under it, and roles may only be given a boundary under it."""
        return f"/{self.prefix}-boundary/"

    # --- S3 layout -----------------------------------------------------------------------------------------------
    @staticmethod
    def raw_prefix(dataset: str) -> str:
        return f"{dataset}/"

    @staticmethod
    def curated_prefix(dataset: str) -> str:
        return f"{dataset}/"

    @staticmethod
    def quarantine_prefix(dataset: str) -> str:
        return f"quarantine/{dataset}/"

    @staticmethod
    def source_object(name: str) -> str:
        """The S3 source object of a pipeline without a CodeConnections source: ``<model>`` or ``platform``."""
        return f"source/{name}.zip"

    @staticmethod
    def model_artifacts_prefix(model: str) -> str:
        """Everything the model's build pipeline writes, in the artifacts bucket."""
        return f"models/{model}/"

    @staticmethod
    def data_capture_prefix(model: str, stage: str) -> str:
        return f"data-capture/{model}/{stage}/"

    @staticmethod
    def batch_prefix(model: str) -> str:
        """The model's batch inference working files, in the artifacts bucket: one ``<run id>/`` per run, with the
        transform input (``input/``), the rows it keys (``rows/``), the transform output (``transform/``) and the
        run's report (``report/``)."""
        return f"batch/{model}/"

    @staticmethod
    def predictions_prefix(model: str) -> str:
        """The model's batch predictions, in the curated bucket: Parquet partitioned ``dt=YYYY-MM-DD`` (the day of the
        run), the Glue table ``<model>_predictions`` (Athena, partition projection) reads it. It can never be a
        dataset's curated prefix (dataset names have no hyphen)."""
        return f"batch-predictions/{model}/"

    @staticmethod
    def predictions_table(model: str) -> str:
        """The Glue Data Catalog table of the model's batch predictions (Glue table names: lower case, ``_``)."""
        return f"{model.replace('-', '_')}_predictions"

    @staticmethod
    def ground_truth_upload_prefix(model: str, stage: str) -> str:
        """Where users upload ground-truth labels of ``model`` in ``stage``, in the **raw** bucket (whose EventBridge
        notifications start the ingestion): CSV or JSON Lines files of ``inference_id,label`` rows. It can never be a
        dataset's raw prefix (dataset names have no hyphen)."""
        return f"ground-truth/{model}/{stage}/"

    @staticmethod
    def model_monitor_ground_truth_prefix(model: str, stage: str) -> str:
        """The ingested labels in Model Monitor's ground-truth format, ``<prefix>yyyy/mm/dd/hh/*.jsonl``, in the
        **artifacts** bucket (next to the data capture): the model-quality schedule's ground-truth input."""
        return f"model-monitor/ground-truth/{model}/{stage}/"

    @staticmethod
    def ground_truth_quarantine_prefix(model: str, stage: str) -> str:
        """Rejected ground-truth rows (with their reason) and each upload's ingestion report, in the **artifacts**
        bucket."""
        return f"quarantine/ground-truth/{model}/{stage}/"
