"""Stand-ins for what the SageMaker containers do around the platform's code, for the pipeline rehearsal.

Two pieces, each documented against the AWS docs it follows:

**Training toolkit (script mode)** -- :func:`training_environment`, :func:`hyperparameter_args`,
:func:`deserialize_hyperparameters`. What the sagemaker-training toolkit in the framework images does
(https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-running-container.html, and
https://github.com/aws/sagemaker-training-toolkit ENVIRONMENT_VARIABLES.md):

- ``/opt/ml/input/config/hyperparameters.json`` holds the job's ``HyperParameters`` (strings); the toolkit reads each
  value with ``json.loads`` and keeps the raw string when it is not JSON (so ``"\\"train.py\\""`` and ``"train.py"``
  both become ``train.py``, ``"5"`` becomes 5).
- ``sagemaker_program`` / ``sagemaker_submit_directory`` (and every other ``sagemaker_*`` key) are the toolkit's own;
  the others reach the program as ``--key value`` arguments, keys sorted, values ``str()``-ed (lists and dicts JSON).
- the submit directory (an S3 URI of a tar.gz) is downloaded and extracted into ``/opt/ml/code``, which is the
  working directory and is on ``PYTHONPATH``; the program runs as ``python <program> <args>``.
- ``SM_MODEL_DIR=/opt/ml/model``, ``SM_CHANNELS`` (JSON list), ``SM_CHANNEL_<NAME>=/opt/ml/input/data/<name>``,
  ``SM_HPS`` (JSON of the user hyperparameters), ``SM_HP_<NAME>``, ``SM_OUTPUT_DATA_DIR=/opt/ml/output/data``,
  ``SM_OUTPUT_DIR``, ``SM_INPUT_DIR``, ``SM_INPUT_CONFIG_DIR``, ``SM_NUM_CPUS``, ``SM_NUM_GPUS=0``,
  ``SM_CURRENT_HOST=algo-1``, ``SM_HOSTS=["algo-1"]``, ``SM_MODULE_DIR``, ``SM_USER_ENTRY_POINT``, ``SM_USER_ARGS``.

Not emulated: ``requirements.txt``/``setup.py`` installation from the source dir, distributed training, Pipe/
FastFile input modes, checkpoints, metric definitions (regexes on the log), the framework images' own Python and
library versions (the stand-in interpreter is the rehearsal's ``rh.python``).

**Model Monitor data-quality baseline** -- :func:`data_quality_baseline`. The Model Monitor analyzer image (Deequ on
Spark) cannot run here. The stand-in reads the baseline dataset as the analyzer does per its ``dataset_format``
(``{"csv": {"header": bool}}``: with ``header`` false the columns are named ``_c0``, ``_c1``, ... as Spark names
them; every file under the dataset directory is one dataset) and writes ``statistics.json`` and
``constraints.json`` in the documented shape
(https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-interpreting-statistics.html and
model-monitor-byoc-constraints.html): per column ``name``, ``inferred_type`` (``Integral`` when every present value is
an integer, ``Fractional`` when every present value is a number, ``String`` otherwise), ``completeness`` (present /
rows), ``num_present``/``num_missing``, mean, sum, std_dev, min, max for numbers, distinct_count for strings, and
``is_non_negative`` / ``domains`` constraints. Not emulated: KLL sketches and distributions (omitted), the
``json``/``parquet`` dataset formats, the drift check itself (``SkipCheck`` false), CloudWatch metrics.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional

from rehearsal.assembly import RehearsalError

OPT_ML = "/opt/ml"
CURRENT_HOST = "algo-1"


# --- training toolkit ---------------------------------------------------------------------------------------------
def deserialize_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """The toolkit's ``read_hyperparameters``: each value ``json.loads``-ed, the raw string when it is not JSON."""
    out: dict[str, Any] = {}
    for key, value in hyperparameters.items():
        try:
            out[key] = json.loads(value)
        except (TypeError, ValueError):
            out[key] = value
    return out


def user_hyperparameters(hps: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters that reach the program (the toolkit keeps ``sagemaker_*`` for itself)."""
    return {k: v for k, v in hps.items() if not k.startswith("sagemaker_")}


def hyperparameter_args(hps: Mapping[str, Any]) -> list[str]:
    """``--key value`` for each user hyperparameter, keys sorted (the toolkit's ``mapping.to_cmd_args``)."""
    args: list[str] = []
    for key in sorted(hps):
        value = hps[key]
        args += [f"--{key}", json.dumps(value) if isinstance(value, (list, dict)) else str(value)]
    return args


def training_environment(
    channels: list[str], hps: Mapping[str, Any], program: str, submit_dir: str, job_name: str
) -> dict[str, str]:
    """The ``SM_*`` variables the training toolkit sets for a script-mode program."""
    user = user_hyperparameters(hps)
    env = {
        "SM_MODEL_DIR": f"{OPT_ML}/model",
        "SM_INPUT_DIR": f"{OPT_ML}/input",
        "SM_INPUT_DATA_CONFIG": json.dumps({c: {"TrainingInputMode": "File"} for c in channels}),
        "SM_INPUT_CONFIG_DIR": f"{OPT_ML}/input/config",
        "SM_OUTPUT_DIR": f"{OPT_ML}/output",
        "SM_OUTPUT_DATA_DIR": f"{OPT_ML}/output/data",
        "SM_OUTPUT_INTERMEDIATE_DIR": f"{OPT_ML}/output/intermediate",
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_HPS": json.dumps(user, sort_keys=True),
        "SM_USER_ARGS": json.dumps(hyperparameter_args(user)),
        "SM_USER_ENTRY_POINT": program,
        "SM_MODULE_NAME": program[:-3] if program.endswith(".py") else program,
        "SM_MODULE_DIR": submit_dir,
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": "0",
        "SM_CURRENT_HOST": CURRENT_HOST,
        "SM_HOSTS": json.dumps([CURRENT_HOST]),
        "SM_NETWORK_INTERFACE_NAME": "eth0",
        "SM_TRAINING_ENV": json.dumps({"job_name": job_name, "current_host": CURRENT_HOST, "hosts": [CURRENT_HOST]}),
        "SM_LOG_LEVEL": "20",
        "PYTHONPATH": f"{OPT_ML}/code",
    }
    for channel in channels:
        env[f"SM_CHANNEL_{channel.upper()}"] = f"{OPT_ML}/input/data/{channel}"
    for key, value in user.items():
        env[f"SM_HP_{key.upper()}"] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return env


# --- Model Monitor data-quality baseline ----------------------------------------------------------------------------
def _number(text: str) -> Optional[float]:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_csv_dataset(directory: Path, header: bool) -> tuple[list[str], list[list[str]]]:
    """Every CSV file under ``directory`` as one dataset: (column names, rows of strings)."""
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    if not files:
        raise RehearsalError(f"the baseline dataset directory {directory} is empty")
    names: Optional[list[str]] = None
    rows: list[list[str]] = []
    for path in files:
        reader = csv.reader(io.StringIO(path.read_text()))
        file_rows = [r for r in reader if r]
        if header and file_rows:
            file_names, file_rows = file_rows[0], file_rows[1:]
            names = names or file_names
        rows.extend(file_rows)
    width = max((len(r) for r in rows), default=len(names or []))
    if names is None:
        names = [f"_c{i}" for i in range(width)]
    return names, rows


def data_quality_baseline(dataset_dir: Path, dataset_format: Mapping[str, Any], output_dir: Path) -> dict[str, Any]:
    """Write statistics.json and constraints.json of the dataset (see the module docstring); return the statistics."""
    if "csv" not in dataset_format:
        raise RehearsalError(
            f"the Model Monitor stand-in reads CSV datasets only, not dataset_format {json.dumps(dataset_format)}"
        )
    header = bool(dataset_format["csv"].get("header", True))
    names, rows = read_csv_dataset(dataset_dir, header)
    total = len(rows)
    features, constraints = [], []
    for index, name in enumerate(names):
        values = [r[index].strip() if index < len(r) else "" for r in rows]
        present = [v for v in values if v != ""]
        numbers = [_number(v) for v in present]
        common = {"num_present": len(present), "num_missing": total - len(present)}
        completeness = len(present) / total if total else 0.0
        if present and all(n is not None for n in numbers):
            integral = all(float(n).is_integer() and "." not in v and "e" not in v.lower()
                           for n, v in zip(numbers, present))
            inferred = "Integral" if integral else "Fractional"
            nums = [float(n) for n in numbers]
            mean = sum(nums) / len(nums)
            features.append({
                "name": name,
                "inferred_type": inferred,
                "numerical_statistics": {
                    "common": common,
                    "mean": mean,
                    "sum": sum(nums),
                    "std_dev": math.sqrt(sum((x - mean) ** 2 for x in nums) / len(nums)),
                    "min": min(nums),
                    "max": max(nums),
                },
            })
            constraints.append({
                "name": name, "inferred_type": inferred, "completeness": completeness,
                "num_constraints": {"is_non_negative": min(nums) >= 0},
            })
        else:
            distinct = sorted(set(present))
            features.append({
                "name": name,
                "inferred_type": "String",
                "string_statistics": {"common": common, "distinct_count": len(distinct)},
            })
            constraints.append({
                "name": name, "inferred_type": "String", "completeness": completeness,
                "string_constraints": {"domains": distinct[:100]},
            })
    statistics = {"version": 0, "dataset": {"item_count": total}, "features": features}
    constraint_doc = {
        "version": 0,
        "features": constraints,
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": 1.0,
            "domain_content_threshold": 1.0,
            "distribution_constraints": {"perform_comparison": "Enabled", "comparison_threshold": 0.1,
                                         "comparison_method": "Robust"},
        },
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "statistics.json").write_text(json.dumps(statistics, indent=1))
    (output_dir / "constraints.json").write_text(json.dumps(constraint_doc, indent=1))
    return statistics
