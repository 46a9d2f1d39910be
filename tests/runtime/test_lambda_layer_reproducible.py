"""The Lambda dependency layer is byte-reproducible: the same inputs give the same CDK asset hash.

Why it matters: the layer's asset hash names its S3 object; a new hash means a new ``AWS::Lambda::LayerVersion``,
hence a new function version and a CodeDeploy canary on every deploy, and staging and prod (each deploy stage runs
``make install``) shipping different builds. Two builds used to differ in every ``.pyc`` (each embedded the build's
random staging directory as ``co_filename``).

``test_layer_build_is_reproducible`` builds the layer (``scripts/build_lambda_deps.sh``, ~20 s with a warm pip
cache) and compares its CDK fingerprint with the repo's ``build/lambda-deps`` when that was built from the same
inputs (the manifest's ``inputs_sha256``), else with a second build. ``test_layer_has_no_build_host_traces`` checks the
properties that made builds differ, on ``build/lambda-deps``, in a second.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build_lambda_deps.sh"
REQUIREMENTS = REPO / "lambda_src" / "inference" / "requirements.txt"
BUILT = REPO / "build" / "lambda-deps"
PIP_METADATA = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")
OFFLINE = re.compile(r"NewConnectionError|Temporary failure in name resolution|Network is unreachable|"
                     r"Failed to establish a new connection")


def fingerprint(directory: Path) -> str:
    """The layer's asset hash as CDK computes it (same exclude patterns as LambdaInference's layer)."""
    from aws_cdk import FileSystem

    from mlops_constructs.lambda_inference import LAYER_EXCLUDES

    return FileSystem.fingerprint(str(directory), exclude=list(LAYER_EXCLUDES))


def build(out_dir: Path) -> dict:
    env = {**os.environ, "PYTHON": sys.executable, "FORCE": "1", "PIP_RETRIES": "1"}
    done = subprocess.run(["bash", str(SCRIPT), str(REQUIREMENTS), str(out_dir)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=900)
    if done.returncode != 0 and OFFLINE.search(done.stderr):
        pytest.skip("no access to the package index: cannot build the layer")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out_dir / "manifest.json").read_text())


def differences(left: Path, right: Path) -> list[str]:
    out: list[str] = []

    def walk(cmp: filecmp.dircmp, prefix: str) -> None:
        out.extend(f"only in one build: {prefix}{n}" for n in cmp.left_only + cmp.right_only)
        out.extend(f"differs: {prefix}{n}" for n in cmp.diff_files + cmp.funny_files)
        for name, sub in cmp.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(filecmp.dircmp(left, right), "")
    return out


def test_layer_build_is_reproducible(tmp_path):
    first = build(tmp_path / "first")
    reference = BUILT
    manifest_path = BUILT / "manifest.json"
    existing = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    if (existing.get("inputs_sha256"), existing.get("bytecode")) != (first["inputs_sha256"], first["bytecode"]):
        reference = tmp_path / "second"  # build/lambda-deps is stale or absent: build twice here
        build(reference)
    left, right = fingerprint(tmp_path / "first"), fingerprint(reference)
    if left != right:
        diff = differences(tmp_path / "first" / "python", reference / "python")
        pytest.fail(f"two builds of the layer differ ({len(diff)} files), e.g.:\n  " + "\n  ".join(diff[:20]))


def _pyc_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.pyc"))


def test_layer_has_no_build_host_traces():
    layer = BUILT / "python"
    if not layer.is_dir():
        pytest.skip("build/lambda-deps not built (make lambda-deps)")
    manifest = json.loads((BUILT / "manifest.json").read_text())

    leftovers = [str(p.relative_to(layer)) for name in PIP_METADATA for p in layer.glob(f"*.dist-info/{name}")]
    assert not leftovers, f"pip install metadata (paths, tool names) left in the layer: {leftovers[:5]}"
    assert not (layer / "bin").exists(), "console scripts (build host shebangs) left in the layer"

    pycs = _pyc_files(layer)
    if not pycs:
        assert manifest.get("bytecode") == "none", "the manifest says bytecode was compiled, the layer has no .pyc"
        return
    host_paths = [str(REPO).encode(), str(BUILT).encode(), b"/.staging."]
    wrong: list[str] = []
    for pyc in pycs:
        data = pyc.read_bytes()
        flags = int.from_bytes(data[4:8], "little")
        source = pyc.parent.parent / (pyc.name.split(".")[0] + ".py")
        expected = f"/opt/python/{source.relative_to(layer).as_posix()}".encode()
        if flags != 0b01:  # PEP 552: hash-based (bit 0), source not checked (bit 1 clear)
            wrong.append(f"{pyc.relative_to(layer)}: flags {flags}, expected unchecked-hash (1)")
        elif expected not in data:
            wrong.append(f"{pyc.relative_to(layer)}: co_filename is not {expected.decode()}")
        elif any(path in data for path in host_paths):
            wrong.append(f"{pyc.relative_to(layer)}: embeds a build host path")
    assert not wrong, f"{len(wrong)} .pyc are not reproducible, e.g.: {wrong[:5]}"
