#!/usr/bin/env bash
# Build the third-party packages of a Python Lambda function as a layer directory, without Docker.
#
#   scripts/build_lambda_deps.sh REQUIREMENTS_FILE OUT_DIR
#   scripts/build_lambda_deps.sh --inputs-hash REQUIREMENTS_FILE    # print the inputs hash, build nothing
#
# Result: OUT_DIR.zip, the layer as deployed (python/... entries; the CDK asset uploads this file as is), and
# OUT_DIR.inputs.sha256, the hash of everything the build depends on (see "inputs hash" below), written last: the
# pair is up to date when that file matches. Also OUT_DIR/python/ (the same content unzipped, for the latency
# benchmark and for reading) and OUT_DIR/manifest.json (inputs hash, sizes). Wheels only, for the Lambda platform (manylinux x86_64, CPython $PYTHON_VERSION), with
# --no-deps: the requirements file must be the complete closure, which this script checks against every
# installed package's Requires-Dist (packages the Lambda runtime ships, boto3/botocore & co, count as present).
#
# Then it strips what never runs on Lambda (tests, __pycache__, type stubs, C headers, console scripts, RECORD),
# prunes scipy to what `import xgboost` needs (scipy._lib + scipy.sparse: xgboost.core imports scipy.sparse at
# import time; the rest of scipy and its OpenBLAS are never loaded by the Booster), compiles bytecode when an
# interpreter of the target version is available (read-only /opt cannot cache it at run time), smoke-tests the
# imports in isolation when the host Python is the target version, and prints the sizes.
#
# Idempotent: the build happens in a staging dir that replaces OUT_DIR/python at the end; an up-to-date build
# (same inputs hash) is kept as is unless FORCE=1.
#
# Inputs hash: sha256 of the requirements file's text, this script's text, PYTHON_VERSION, the platform tags and the
# bytecode compiler ("CPython 3.12.1", or "none" when no interpreter of PYTHON_VERSION is found): what decides the
# layer's bytes, given pinned wheels. Synth never hashes or walks the 90 MB tree: the CDK asset is the one zip file.
#
# Reproducible: the same requirements, script and bytecode compiler (the exact python3.12 release; recorded as
# "bytecode" in manifest.json) give byte-identical OUT_DIR/python and OUT_DIR.zip (sorted entries, fixed timestamps and modes), hence the same CDK
# asset hash: a deploy with
# nothing changed publishes no new layer or function version and starts no CodeDeploy deployment, and two builds
# (staging's and prod's) ship the same layer. What used to differ: .pyc embedding the random staging path. pip's
# RECORD/INSTALLER/REQUESTED/direct_url.json (install paths, tool names) and console scripts (shebangs) are removed.
# Checked by tests/runtime/test_lambda_layer_reproducible.py.
#
# Environment: PYTHON_VERSION (default 3.12), PYTHON (the interpreter whose pip runs; default the repo's .venv,
# else python3), LAMBDA_PYTHON (an interpreter of PYTHON_VERSION for bytecode and the smoke test; default
# found on PATH or in pyenv), HANDLER_DIR (function code measured with the layer; default lambda_src/inference),
# MAX_ZIP_MB (default 50) and MAX_UNZIPPED_MB (default 250): fail above these, FORCE=1: rebuild anyway.
set -euo pipefail

HASH_ONLY=0
if [[ "${1:-}" == --inputs-hash && $# -eq 2 ]]; then
  HASH_ONLY=1
elif [[ $# -ne 2 ]]; then
  echo "usage: $0 REQUIREMENTS_FILE OUT_DIR | $0 --inputs-hash REQUIREMENTS_FILE" >&2
  exit 2
fi
if [[ $HASH_ONLY == 1 ]]; then set -- "$2" ""; fi
[[ -f "$1" ]] || { echo "no such requirements file: $1" >&2; exit 2; }
REQUIREMENTS=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
OUT_DIR=$2
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
HANDLER_DIR=${HANDLER_DIR:-$REPO/lambda_src/inference}
MAX_ZIP_MB=${MAX_ZIP_MB:-50}
MAX_UNZIPPED_MB=${MAX_UNZIPPED_MB:-250}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
# Lambda Python 3.12 runs on Amazon Linux 2023 (glibc 2.34): manylinux_2_28 and manylinux2014 (glibc 2.17) wheels
# both run there. pip does not widen a PEP 600 tag to older ones by itself, hence both flags, the newer preferred
# (numpy >= 2.3 ships manylinux_2_28 wheels only, pydantic-core manylinux2014 ones, and xgboost-cpu's
# manylinux2014 variant warns at every import that it is deprecated).
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64)

# An interpreter of the target version: $LAMBDA_PYTHON, the host's, python3.12 on PATH, or a pyenv install.
version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true; }
COMPILER=""
CANDIDATES=("${LAMBDA_PYTHON:-}" "$PYTHON" "$(command -v "python$PYTHON_VERSION" 2>/dev/null || true)")
if command -v pyenv >/dev/null 2>&1; then
  for candidate in "$(pyenv root)"/versions/"$PYTHON_VERSION"*/bin/python"$PYTHON_VERSION"; do
    CANDIDATES+=("$candidate")
  done
fi
for candidate in "${CANDIDATES[@]}"; do
  if [[ -n "$candidate" && -x "$candidate" && "$(version_of "$candidate")" == "$PYTHON_VERSION" ]]; then
    COMPILER=$candidate
    break
  fi
done
BYTECODE=none
if [[ -n "$COMPILER" ]]; then
  BYTECODE=$("$COMPILER" -c 'import platform; print(platform.python_implementation(), platform.python_version())')
fi
STAMP=$(cat "$REQUIREMENTS" "${BASH_SOURCE[0]}" \
          <(printf '%s\n' "python $PYTHON_VERSION" "platforms ${PLATFORMS[*]}" "bytecode $BYTECODE") \
        | sha256sum | cut -d' ' -f1)
if [[ $HASH_ONLY == 1 ]]; then
  echo "$STAMP"
  exit 0
fi

mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
ZIP=$OUT_DIR.zip
HASH_FILE=$OUT_DIR.inputs.sha256
if [[ "${FORCE:-0}" != 1 && -d "$OUT_DIR/python" && -f "$OUT_DIR/manifest.json" && -f "$ZIP" && -f "$HASH_FILE" ]] \
    && [[ "$(cat "$HASH_FILE")" == "$STAMP" ]] && grep -q "\"inputs_sha256\": \"$STAMP\"" "$OUT_DIR/manifest.json"; then
  echo "build_lambda_deps: $ZIP is up to date (FORCE=1 to rebuild)"
  "$PYTHON" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(json.dumps(m["sizes"], indent=2))' \
    "$OUT_DIR/manifest.json"
  exit 0
fi
rm -f "$HASH_FILE"  # not up to date until the end

STAGE=$(mktemp -d "$OUT_DIR/.staging.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
TARGET=$STAGE/python

echo "build_lambda_deps: installing $REQUIREMENTS for CPython $PYTHON_VERSION manylinux x86_64 into $OUT_DIR/python"
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-input \
  --no-deps --no-compile --only-binary=:all: --implementation cp --python-version "$PYTHON_VERSION" \
  "${PLATFORMS[@]}" --target "$TARGET" -r "$REQUIREMENTS" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)  # noise from local file:// mirrors

# ---- dependency closure, stripping, scipy pruning ----------------------------------------------------------------
"$PYTHON" - "$TARGET" "$REQUIREMENTS" "$PYTHON_VERSION" <<'PY'
import re
import shutil
import sys
from importlib.metadata import distributions
from pathlib import Path

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pip vendors packaging
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

target, requirements, py_version = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

# What the Lambda Python runtime ships (boto3 and its dependencies): present without being in the layer.
RUNTIME_PROVIDED = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"}

environment = default_environment()
environment.update(python_version=py_version, python_full_version=f"{py_version}.0", sys_platform="linux",
                   platform_system="Linux", platform_machine="x86_64", os_name="posix",
                   implementation_name="cpython", platform_python_implementation="CPython")

requested_extras: dict[str, set[str]] = {}
for line in requirements.read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if line and not line.startswith("-"):
        req = Requirement(line)
        requested_extras[canonicalize_name(req.name)] = set(req.extras)

installed = {canonicalize_name(d.metadata["Name"]): d for d in distributions(path=[str(target)])}
problems = []
for name, dist in sorted(installed.items()):
    for text in dist.requires or []:
        req = Requirement(text)
        extras = {""} | requested_extras.get(name, set())
        if req.marker and not any(req.marker.evaluate({**environment, "extra": e}) for e in extras):
            continue
        dep = canonicalize_name(req.name)
        if dep in installed:
            version = installed[dep].version
            if req.specifier and not req.specifier.contains(version, prereleases=True):
                problems.append(f"{name} needs {req}, the layer has {dep} {version}")
        elif dep not in RUNTIME_PROVIDED:
            problems.append(f"{name} needs {req}, which is neither in {requirements.name} nor in the runtime")
for name in requested_extras:
    if name not in installed:
        problems.append(f"{name} was requested but not installed")
if problems:
    sys.exit("dependency closure is incomplete (the install uses --no-deps):\n  " + "\n  ".join(problems))
print(f"build_lambda_deps: dependency closure OK ({len(installed)} distributions)")

def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()

# Never used at run time on Lambda.
for pattern in ("__pycache__", "tests", "*.pyi"):
    for path in sorted(target.rglob(pattern), key=lambda p: -len(p.parts)):
        if pattern != "tests" or path.is_dir():
            remove(path)
remove(target / "bin")  # console scripts with the build host's shebang
remove(target / "numpy" / "_core" / "include")  # C headers, for building extensions only
for dist_info in target.glob("*.dist-info"):
    for name in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
        remove(dist_info / name)  # RECORD's hashes no longer hold after stripping; importlib.metadata needs none

# scipy: keep the package root, scipy._lib and scipy.sparse (minus sparse.linalg/csgraph, which need
# scipy.linalg). Nothing kept links against scipy.libs (OpenBLAS, gfortran), so it goes too.
scipy = target / "scipy"
if scipy.is_dir():
    keep_dirs = {"_lib", "sparse"}
    for child in scipy.iterdir():
        if child.is_dir() and child.name not in keep_dirs:
            remove(child)
    remove(scipy / "conftest.py")
    for sub in ("linalg", "csgraph"):
        remove(scipy / "sparse" / sub)
    remove(target / "scipy.libs")
    leftovers = [p for p in scipy.rglob("*.so") if b"scipy_openblas" in p.read_bytes()]
    if leftovers:
        sys.exit(f"kept scipy extensions still need scipy.libs: {leftovers}")
PY

# ---- bytecode: Lambda's /opt is read-only, so without .pyc every cold start compiles the imported modules ------
if [[ -n "$COMPILER" ]]; then
  # Reproducible bytes (same inputs -> same CDK asset hash -> no new layer version, no CodeDeploy run):
  # - unchecked-hash: no source mtime in the .pyc (valid whatever mtimes the zip/extraction gives the sources);
  # - -s/-p: each code object's co_filename is the path Lambda runs it from (/opt/python/...), not this build's
  #   random staging dir;
  # - PYTHONHASHSEED=0: before 3.11 marshal wrote frozenset constants in (per-process random) hash order; 3.11+
  #   sorts them, the seed costs nothing for other PYTHON_VERSIONs.
  PYTHONHASHSEED=0 "$COMPILER" -m compileall -q -j 0 --invalidation-mode unchecked-hash \
    -s "$STAGE" -p /opt "$TARGET" >/dev/null
  echo "build_lambda_deps: compiled bytecode with $COMPILER"
else
  echo "build_lambda_deps: WARNING no python$PYTHON_VERSION here: no .pyc in the layer (cold starts compile the"
  echo "  imported modules, ~+0.3-0.6 s); run the script where python$PYTHON_VERSION exists to include them"
fi

# ---- smoke test in isolation (only the layer, the handler dir and the runtime-provided packages) ----------------
if [[ -n "$COMPILER" ]]; then
  "$PYTHON" - "$TARGET" "$HANDLER_DIR" "$COMPILER" <<'PY'
import os
import subprocess
import sys
import tempfile
from pathlib import Path

target, handler_dir, interpreter = sys.argv[1], sys.argv[2], sys.argv[3]
# Stand-in for the runtime's own boto3 & co: link them from this interpreter's site-packages.
import boto3, botocore, dateutil, jmespath, s3transfer, six, urllib3  # noqa: E401

with tempfile.TemporaryDirectory() as runtime_dir:
    for module in (boto3, botocore, dateutil, jmespath, s3transfer, urllib3):
        os.symlink(Path(module.__file__).parent, Path(runtime_dir) / Path(module.__file__).parent.name)
    os.symlink(six.__file__, Path(runtime_dir) / "six.py")
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2], sys.argv[3]]\n"
        "import numpy as np, scipy.sparse, xgboost, pydantic, aws_lambda_powertools\n"
        "from aws_lambda_powertools import Logger, Metrics, Tracer\n"
        "import inference_runtime.handler\n"
        "rng = np.random.default_rng(0); X = rng.random((64, 4)); y = X.sum(axis=1)\n"
        "booster = xgboost.train({'nthread': 1}, xgboost.DMatrix(X, label=y), num_boost_round=3)\n"
        "assert booster.inplace_predict(X[:2].astype(np.float32)).shape == (2,)\n"
        "leaked = [m for m in ('sklearn', 'pandas', 'scipy.special', 'scipy.linalg') if m in sys.modules]\n"
        "assert not leaked, leaked\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MODEL_", "INFERENCE_"))}
    env["POWERTOOLS_TRACE_DISABLED"] = "true"
    # -S -I: no site-packages, no user site, no PYTHON* env: only what Lambda would have.
    # -B: write no bytecode (the layer's .pyc are final; the handler dir's are not part of the asset).
    subprocess.run([interpreter, "-S", "-I", "-B", "-c", code, target, handler_dir, runtime_dir], check=True,
                   env=env)
print(f"build_lambda_deps: isolated import + predict smoke test OK with {interpreter}")
PY
else
  echo "build_lambda_deps: WARNING no Python $PYTHON_VERSION here: skipped the isolated import smoke test"
fi

# ---- swap in, measure, record ------------------------------------------------------------------------------------
rm -rf "$OUT_DIR/python"
mv "$TARGET" "$OUT_DIR/python"
"$PYTHON" - "$OUT_DIR" "$HANDLER_DIR" "$STAMP" "$PYTHON_VERSION" "$MAX_ZIP_MB" "$MAX_UNZIPPED_MB" "$BYTECODE" \
  "$ZIP" <<'PY'
import hashlib
import io
import json
import os
import sys
import zipfile
from pathlib import Path

out_dir, handler_dir, stamp, py_version = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
max_zip_mb, max_unzipped_mb, bytecode, layer_zip_path = float(sys.argv[5]), float(sys.argv[6]), sys.argv[7], Path(sys.argv[8])
EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold: no build time in the archive


def write_layer_zip(root: Path, target: Path) -> tuple[int, int]:
    """root/** as python/** in a byte-reproducible zip: sorted entries, fixed time, mode 644 or 755, no directory
    entries, no extra fields. Lambda extracts it into /opt. Returns (zip bytes, unzipped bytes)."""
    partial = target.with_name(target.name + ".partial")
    unzipped = 0
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
            if path.is_symlink() or not path.is_file():
                continue
            info = zipfile.ZipInfo(f"python/{path.relative_to(root).as_posix()}", date_time=EPOCH)
            info.create_system = 3  # unix, so that external_attr carries the mode
            info.external_attr = ((0o100755 if os.access(path, os.X_OK) else 0o100644) & 0xFFFF) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            archive.writestr(info, data, compresslevel=6)
            unzipped += len(data)
    partial.replace(target)
    return target.stat().st_size, unzipped


def files(root: Path, prefix: str, skip_pycache: bool = False):
    for path in sorted(root.rglob("*")):
        if path.is_file() and not (skip_pycache and "__pycache__" in path.parts):
            yield path, f"{prefix}{path.relative_to(root)}"


def measure(entries) -> tuple[int, int]:
    buffer = io.BytesIO()
    unzipped = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path, name in entries:
            archive.write(path, name)
            unzipped += path.stat().st_size
    return buffer.tell(), unzipped


layer_zip, layer_raw = write_layer_zip(out_dir / "python", layer_zip_path)
code_zip, code_raw = measure(files(handler_dir, "", skip_pycache=True))
mb = 1024 * 1024
sizes = {
    "layer_zipped_mb": round(layer_zip / mb, 2),
    "layer_unzipped_mb": round(layer_raw / mb, 2),
    "function_code_zipped_mb": round(code_zip / mb, 3),
    "function_code_unzipped_mb": round(code_raw / mb, 3),
    "total_zipped_mb": round((layer_zip + code_zip) / mb, 2),
    "total_unzipped_mb": round((layer_raw + code_raw) / mb, 2),
}
packages = {}
for child in sorted((out_dir / "python").iterdir()):
    size = sum(p.stat().st_size for p in child.rglob("*") if p.is_file()) if child.is_dir() else child.stat().st_size
    packages[child.name] = round(size / mb, 2)
print(f"build_lambda_deps: layer {sizes['layer_zipped_mb']} MB zipped / {sizes['layer_unzipped_mb']} MB unzipped; "
      f"with the function code {sizes['total_zipped_mb']} MB zipped / {sizes['total_unzipped_mb']} MB unzipped "
      f"(Lambda limits: 50 MB zipped direct upload, 250 MB unzipped)")
for name, size in sorted(packages.items(), key=lambda kv: -kv[1])[:8]:
    print(f"  {size:8.2f} MB  {name}")
manifest_path = out_dir / "manifest.json"
if sizes["total_zipped_mb"] > max_zip_mb or sizes["total_unzipped_mb"] > max_unzipped_mb:
    manifest_path.unlink(missing_ok=True)  # not up to date: the next run rebuilds
    layer_zip_path.unlink(missing_ok=True)
    sys.exit(f"over budget: {max_zip_mb} MB zipped / {max_unzipped_mb} MB unzipped")
# bytecode: the interpreter that compiled the .pyc ("none": no .pyc), the one input outside inputs_sha256 that
# changes the layer's bytes (another 3.12.x patch release may emit other bytecode).
manifest = {"inputs_sha256": stamp, "python_version": py_version, "bytecode": bytecode, "sizes": sizes,
            "unzipped_mb_by_entry": packages}
manifest["layer_zip"] = {"path": layer_zip_path.name, "sha256": hashlib.sha256(layer_zip_path.read_bytes()).hexdigest()}
manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
print(f"build_lambda_deps: {layer_zip_path} ({layer_zip / mb:.2f} MB, sha256 {manifest['layer_zip']['sha256'][:16]}...)")
PY
echo "$STAMP" > "$HASH_FILE"  # last: the zip and the directory are complete and match these inputs
