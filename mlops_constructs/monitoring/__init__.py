"""Monitoring and logging: the alarm topic, failure notifications, per-model and per-stage dashboards with the alarms
no resource construct owns, the platform overview, inference log metrics and queries, and SageMaker Model Monitor
data-quality schedules.

Every alarm notifies one KMS-encrypted SNS topic (:class:`AlarmTopic`). Count thresholds mean "alarm when the count
in one period reaches the value" (``>=``); latency and rate thresholds mean "alarm above the value" (``>``).

Modules: ``topic`` (:class:`AlarmTopic`), ``failure_events`` (:class:`FailureEvents`), ``dashboards``
(:class:`ModelMonitoring`, :class:`PlatformOverview`), ``data_quality`` (:class:`DataQualityMonitor`), ``images``
(the Model Monitor analyzer image).
"""

from mlops_constructs.monitoring.dashboards import (
    GLUE_NAMESPACE,
    SAGEMAKER_PIPELINE_NAMESPACE,
    ModelMonitoring,
    PlatformOverview,
)
from mlops_constructs.monitoring.data_quality import HOURLY, MODEL_MONITOR_METRICS_NAMESPACE, DataQualityMonitor
from mlops_constructs.monitoring.failure_events import NO_DATA_FAILURE_REASON, FailureEvents
from mlops_constructs.monitoring.images import MODEL_MONITOR_REPOSITORY, model_monitor_image_accounts
from mlops_constructs.monitoring.topic import AlarmTopic

__all__ = [
    "AlarmTopic",
    "DataQualityMonitor",
    "FailureEvents",
    "GLUE_NAMESPACE",
    "HOURLY",
    "MODEL_MONITOR_METRICS_NAMESPACE",
    "MODEL_MONITOR_REPOSITORY",
    "ModelMonitoring",
    "NO_DATA_FAILURE_REASON",
    "PlatformOverview",
    "SAGEMAKER_PIPELINE_NAMESPACE",
    "model_monitor_image_accounts",
]

# Model quality (issue 14): captured predictions joined with ground truth by inference ID, and the labels' ingestion.
from mlops_constructs.monitoring.model_quality import (  # noqa: E402
    MODEL_QUALITY_METRICS_NAMESPACE,
    GroundTruthIngestion,
    ModelQualityMonitor,
)

__all__ += ["GroundTruthIngestion", "MODEL_QUALITY_METRICS_NAMESPACE", "ModelQualityMonitor"]
