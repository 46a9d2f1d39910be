"""Model and platform CI/CD on CodePipeline V2 and CodeBuild, in small pieces.

- :mod:`~mlops_constructs.cicd.storage`: a pipeline's key, artifacts bucket, build logs and S3 source bucket;
- :mod:`~mlops_constructs.cicd.source`: a CodeConnections source or an S3 source object and its upload trigger;
- :mod:`~mlops_constructs.cicd.build_ci`: :class:`ModelBuildCi`, tests then starts the model's SageMaker pipeline;
- :mod:`~mlops_constructs.cicd.deploy_cd`: :class:`ModelDeployCd`, on approval resolves the approved package, then
  deploys and smoke-tests each :class:`DeployStage` (:mod:`~mlops_constructs.cicd.deploy_stage`), approval before
  the last;
- :mod:`~mlops_constructs.cicd.platform_pipeline`: :class:`PlatformPipeline`, the self-mutating CDK Pipeline.

The CodeBuild commands live in ``buildspecs/*.yml`` and are inlined into the projects at synth time, so ``cdk diff``
shows every change to them; the scripts they call are ``cicd_scripts/*`` (see ``python -m cicd_scripts.<name>
--help``). Physical names come in as props (:class:`BuildCiNames`, :class:`DeployCdNames`).
"""

from mlops_constructs.cicd.build_ci import BuildCiNames, ModelBuildCi
from mlops_constructs.cicd.common import failure_event_detail, load_buildspec
from mlops_constructs.cicd.deploy_cd import DeployCdNames, ModelDeployCd, deploy_build_timeout
from mlops_constructs.cicd.deploy_stage import DeployStage
from mlops_constructs.cicd.platform_pipeline import PlatformPipeline
from mlops_constructs.cicd.source import PipelineSource
from mlops_constructs.cicd.storage import PipelineStorage, StorageOptions

__all__ = [
    "BuildCiNames",
    "DeployCdNames",
    "DeployStage",
    "ModelBuildCi",
    "ModelDeployCd",
    "PipelineSource",
    "PipelineStorage",
    "PlatformPipeline",
    "StorageOptions",
    "deploy_build_timeout",
    "failure_event_detail",
    "load_buildspec",
]
