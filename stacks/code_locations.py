"""Where this app's cloud-side code lives in the repository. The stacks hand these paths to the constructs, which take
them as props (a construct never looks for the repository: a team can use one from its own repository with its own
code)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Glue job entry point (the job's ScriptLocation) and the modules it imports (shipped in one zip).
GLUE_SCRIPT = ROOT / "glue_jobs" / "etl_job.py"
GLUE_MODULES = (ROOT / "glue_jobs" / "dataset_spec.py", ROOT / "glue_jobs" / "etl_transform.py")
#: Inference function code, and its third-party packages built for Lambda (`make lambda-deps`): one reproducible zip
#: (python/... entries) that the layer uploads as is, so a synth hashes and copies one 30 MB file instead of walking,
#: hashing and copying a 90 MB tree of ~5,000 files. Its inputs hash is in build/lambda-deps.inputs.sha256.
INFERENCE_CODE = ROOT / "lambda_src" / "inference"
INFERENCE_DEPENDENCIES = ROOT / "build" / "lambda-deps.zip"
#: Drift-triggered retraining function code (standard library and the runtime's boto3: no layer).
DRIFT_RETRAIN_CODE = ROOT / "lambda_src" / "drift_retrain"
#: Ground-truth ingestion function code (standard library and the runtime's boto3: no layer).
GROUND_TRUTH_CODE = ROOT / "lambda_src" / "ground_truth"
#: CodeBuild buildspecs, inlined into the projects at synth.
BUILDSPECS = ROOT / "buildspecs"
MODEL_BUILD_BUILDSPEC = BUILDSPECS / "model_build.yml"
#: Batch inference: the plan function's code (standard library and the runtime's boto3: no layer) and the prepare /
#: collect script of its processing jobs (uploaded alone, as the pipeline's step scripts are).
BATCH_RESOLVE_CODE = ROOT / "lambda_src" / "batch_resolve"
BATCH_SCORING_SCRIPT = ROOT / "sagemaker_steps" / "batch_scoring.py"
