"""Inference Lambda latency: cold init, warm handler latency, predict-call choice, deployment size.

    .venv/bin/python benchmarks/inference_latency.py [--cold-runs 7] [--one-row-iterations 2000]
                                                     [--batch-iterations 300] [--batch-rows 100]

- The model: the project's local pipeline trains the small abalone regressor the tests use (inference_fixtures).
- Cold init: a fresh interpreter imports the handler module, which loads the model (MODEL_LOCAL_PATH=model.tar.gz,
  so extraction is included), median of several runs. Measured (a) "lambda-like": the Python of the layer's target
  version (3.12 via pyenv here) with -S -I and sys.path = function code + build/lambda-deps/python (its .pyc) + the
  runtime's boto3 & co, nothing else; also without .pyc (what a layer built where no 3.12 exists costs); and (b)
  "dev venv": this interpreter, where xgboost also imports the installed scikit-learn and pandas (pessimistic).
- Warm latency: ``handler(event, context)`` with a Function URL event, in-process, p50/p99 for 1 row and for a
  batch; metrics EMF lines go to /dev/null as print() would to Lambda's pipe.
- Sizes from build/lambda-deps/manifest.json (built with scripts/build_lambda_deps.sh if missing).

Writes benchmarks/results/inference_latency.json. Targets: warm p50 <= 2 ms and p99 <= 10 ms (1 row), cold init <=
1 s, deployment <= 50 MB zipped.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HANDLER_DIR = REPO / "lambda_src" / "inference"
LAYER_DIR = REPO / "build" / "lambda-deps"
RESULTS = REPO / "benchmarks" / "results" / "inference_latency.json"
TARGETS = {"warm_p50_ms_1_row": 2.0, "warm_p99_ms_1_row": 10.0, "cold_init_s": 1.0, "total_zipped_mb": 50.0}

# Run by a fresh interpreter: times the handler import (which loads the model) from inside, so interpreter start-up
# is reported apart. argv: sys.path entries to prepend.
COLD_CHILD = r"""
import sys, time, json
sys.path[:0] = sys.argv[1:]
t0 = time.perf_counter()
import app
t1 = time.perf_counter()
assert app.get_runtime() is not None
print(json.dumps({"init_s": t1 - t0}))
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(samples_s: list[float], cpu_s: list[float] | None = None) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    out = {"p50_ms": round(percentile(ms, 50), 3), "p90_ms": round(percentile(ms, 90), 3),
           "p99_ms": round(percentile(ms, 99), 3), "mean_ms": round(statistics.fmean(ms), 3), "iterations": len(ms)}
    if cpu_s:  # the handler's own CPU time: the wall-clock tail on a shared machine is mostly preemption
        cpu_ms = [s * 1000 for s in cpu_s]
        out.update(cpu_p50_ms=round(percentile(cpu_ms, 50), 3), cpu_p99_ms=round(percentile(cpu_ms, 99), 3))
    return out


# --------------------------------------------------------------------------------------------------------------------
def train(work: Path):
    sys.path.insert(0, str(REPO / "tests" / "runtime"))
    import inference_fixtures as fx  # noqa: E402  (sets the handler's env: tracing off, no model location)

    started = time.perf_counter()
    result = fx.train_model(fx.curate(work), work / "regression", "regression")
    print(f"trained the abalone model with the local pipeline in {time.perf_counter() - started:.1f} s")
    return fx, result


def find_interpreter(version: str) -> str | None:
    candidates = [os.environ.get("LAMBDA_PYTHON", ""), sys.executable, shutil.which(f"python{version}") or ""]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        candidates += sorted(glob.glob(f"{root}/versions/{version}*/bin/python{version}"))
    for candidate in candidates:
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        got = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True)
        if got.returncode == 0 and got.stdout.strip() == version:
            return candidate
    return None


def layer_manifest() -> dict:
    manifest = LAYER_DIR / "manifest.json"
    if not manifest.exists():
        print("building the Lambda layer (scripts/build_lambda_deps.sh) ...")
        subprocess.run(["bash", str(REPO / "scripts" / "build_lambda_deps.sh"),
                        str(HANDLER_DIR / "requirements.txt"), str(LAYER_DIR)], check=True)
    return json.loads(manifest.read_text())


def runtime_provided_dir(tmp: Path) -> Path:
    """The Lambda runtime's own boto3 & co, linked from this venv (they are pure Python)."""
    import boto3, botocore, dateutil, jmespath, s3transfer, six, urllib3  # noqa: E401

    out = tmp / "runtime-provided"
    out.mkdir()
    for module in (boto3, botocore, dateutil, jmespath, s3transfer, urllib3):
        os.symlink(Path(module.__file__).parent, out / Path(module.__file__).parent.name)
    os.symlink(six.__file__, out / "six.py")
    return out


def cold_init(interpreter: str, flags: list[str], paths: list[str], env: dict[str, str], runs: int) -> dict:
    inits, walls = [], []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run([interpreter, *flags, "-c", COLD_CHILD, *paths], env=env, capture_output=True,
                              text=True)
        walls.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"cold start failed:\n{done.stderr[-3000:]}")
        last = [line for line in done.stdout.splitlines() if line.startswith('{"init_s"')][-1]
        inits.append(json.loads(last)["init_s"])
    return {"median_init_s": round(statistics.median(inits), 3), "min_init_s": round(min(inits), 3),
            "median_process_s": round(statistics.median(walls), 3), "runs": runs}


def child_env(model_tarball: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "MODEL_", "INFERENCE_", "ENDPOINT_", "POWERTOOLS_"))}
    env.update(MODEL_LOCAL_PATH=str(model_tarball), MODEL_VERSION="bench", INFERENCE_MODE="model",
               POWERTOOLS_TRACE_DISABLED="true", POWERTOOLS_METRICS_NAMESPACE="Bench",
               POWERTOOLS_LOG_LEVEL="WARNING", AWS_DEFAULT_REGION="us-east-1")
    return env


def warm_latency(fx, model_tarball: Path, one_row_iterations: int, batch_iterations: int, batch_rows: int) -> dict:
    from inference_runtime import handler as runtime
    from inference_runtime.config import Settings

    runtime.init(Settings(model_local_path=str(model_tarball), model_version="bench",
                          max_batch_rows=max(batch_rows, 1000)))
    context = fx.LambdaContext()
    rows = [row for row, _ in fx.abalone_rows(batch_rows)]
    cases = {
        "1_row": (fx.function_url_event(json.dumps({"instance": fx.ROW})), one_row_iterations),
        f"{batch_rows}_rows": (fx.function_url_event(json.dumps({"instances": rows})), batch_iterations),
    }
    out = {}
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        for name, (event, iterations) in cases.items():
            for _ in range(min(200, iterations)):  # warm-up
                assert runtime.handler(event, context)["statusCode"] == 200
            samples, cpu = [], []
            for _ in range(iterations):
                started, cpu_started = time.perf_counter(), time.thread_time()
                runtime.handler(event, context)
                cpu.append(time.thread_time() - cpu_started)
                samples.append(time.perf_counter() - started)
            out[name] = summary_ms(samples, cpu)
    return out


def predict_call_choice(model_dir: Path, batch_rows: int) -> dict:
    """Booster.inplace_predict vs Booster.predict(DMatrix) on the same float32 matrix (the runtime uses the former)."""
    import numpy as np
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(str(model_dir / "xgboost-model.json"))
    booster.set_param({"nthread": 1})
    n_features = booster.num_features()
    out = {}
    for rows, iterations in ((1, 3000), (batch_rows, 500)):
        matrix = np.random.default_rng(0).random((rows, n_features), dtype=np.float32)
        for name, call in (("inplace_predict", lambda m=matrix: booster.inplace_predict(m, validate_features=False)),
                           ("dmatrix_predict", lambda m=matrix: booster.predict(xgboost.DMatrix(m, nthread=1)))):
            for _ in range(100):
                call()
            samples = []
            for _ in range(iterations):
                started = time.perf_counter()
                call()
                samples.append(time.perf_counter() - started)
            out[f"{name}_{rows}_rows"] = summary_ms(samples)
    return out


# --------------------------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold-runs", type=int, default=7)
    parser.add_argument("--one-row-iterations", type=int, default=2000)
    parser.add_argument("--batch-iterations", type=int, default=300)
    parser.add_argument("--batch-rows", type=int, default=100)
    args = parser.parse_args()

    results: dict = {"host": {"python": platform.python_version(), "machine": platform.machine(),
                              "cpus": os.cpu_count(),
                              "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}}
    with tempfile.TemporaryDirectory(prefix="inference-bench-") as tmp_name:
        tmp = Path(tmp_name)
        fx, model = train(tmp)
        tarball = model.model_artifact

        manifest = layer_manifest()
        results["sizes_mb"] = manifest["sizes"]
        target_version = manifest["python_version"]

        cold: dict = {}
        interpreter = find_interpreter(target_version)
        if interpreter:
            paths = [str(HANDLER_DIR), str(LAYER_DIR / "python"), str(runtime_provided_dir(tmp))]
            env = child_env(tarball)
            cold["lambda_like"] = {"python": target_version, **cold_init(interpreter, ["-S", "-I"], paths, env,
                                                                         args.cold_runs)}
            empty_cache = tmp / "no-pyc"
            empty_cache.mkdir()
            cold["lambda_like_without_pyc"] = {
                "python": target_version,
                **cold_init(interpreter, ["-S", "-I", "-B", "-X", f"pycache_prefix={empty_cache}"], paths, env,
                            args.cold_runs)}
        else:
            print(f"no Python {target_version} found: skipping the lambda-like cold start")
        cold["dev_venv"] = {"python": platform.python_version(),
                            **cold_init(sys.executable, [], [str(HANDLER_DIR)], child_env(tarball), args.cold_runs)}
        results["cold_init"] = cold

        results["warm"] = warm_latency(fx, tarball, args.one_row_iterations, args.batch_iterations, args.batch_rows)
        results["predict_call"] = predict_call_choice(model.model_dir, args.batch_rows)

    headline_cold = cold.get("lambda_like", cold["dev_venv"])["median_init_s"]
    one = results["warm"]["1_row"]
    checks = {
        "warm_p50_ms_1_row": one["p50_ms"],
        "warm_p99_ms_1_row": one["p99_ms"],
        "cold_init_s": headline_cold,
        "total_zipped_mb": results["sizes_mb"]["total_zipped_mb"],
    }
    results["targets"] = {name: {"measured": value, "target": TARGETS[name], "met": value <= TARGETS[name]}
                          for name, value in checks.items()}

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    print()
    print(f"{'measure':<46}{'value':>14}")
    print("-" * 60)
    for name, row in results["warm"].items():
        print(f"{'warm handler ' + name + ' p50 / p99 (ms)':<46}{row['p50_ms']:>7.3f} /{row['p99_ms']:>6.3f}")
        print(f"{'  CPU time p50 / p99 (ms)':<46}{row['cpu_p50_ms']:>7.3f} /{row['cpu_p99_ms']:>6.3f}")
    for name, row in cold.items():
        label = f"cold init {name} (py{row['python']}) median (s)"
        print(f"{label:<46}{row['median_init_s']:>14.3f}")
        print(f"{'  process incl. interpreter start+exit (s)':<46}{row['median_process_s']:>14.3f}")
    for name, row in results["predict_call"].items():
        print(f"{name + ' p50 (ms)':<46}{row['p50_ms']:>14.3f}")
    sizes = results["sizes_mb"]
    print(f"{'layer zipped / unzipped (MB)':<46}{sizes['layer_zipped_mb']:>7.2f} /{sizes['layer_unzipped_mb']:>6.2f}")
    print(f"{'deps + handler zipped / unzipped (MB)':<46}"
          f"{sizes['total_zipped_mb']:>7.2f} /{sizes['total_unzipped_mb']:>6.2f}")
    print("-" * 60)
    for name, check in results["targets"].items():
        print(f"{name:<34}{check['measured']:>10} <= {check['target']:<6} {'OK' if check['met'] else 'MISSED'}")
    print(f"load average at start {results['host']['load_average_at_start']} on {os.cpu_count()} CPUs")
    print(f"\nwrote {RESULTS.relative_to(REPO)}")
    return 0 if all(c["met"] for c in results["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
