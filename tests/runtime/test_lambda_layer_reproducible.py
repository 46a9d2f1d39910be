"""The Lambda dependency layer is byte-reproducible, and its inputs hash follows its inputs.

Why it matters: the layer's asset hash names its S3 object; a new hash means a new ``AWS::Lambda::LayerVersion``,
hence a new function version and a CodeDeploy canary on every deploy, and staging and prod (each deploy stage runs
``make install``) shipping different builds. Two builds used to differ in every ``.pyc`` (each embedded the build's
random staging directory as ``co_filename``).

The layer is deployed as one file, ``build/lambda-deps.zip`` (the CDK asset uploads it as is), rebuilt when
``build/lambda-deps.inputs.sha256`` no longer matches its inputs. ``test_layer_build_is_reproducible`` builds it
(``scripts/build_lambda_deps.sh``, ~20-50 s with a warm pip cache) and compares the zip's bytes with the repo's
when that was built from the same inputs, else with a second build. ``test_each_input_changes_the_inputs_hash``
changes each input of the hash in turn. The others check the zip as deployed, in a second.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build_lambda_deps.sh"
REQUIREMENTS = REPO / "lambda_src" / "inference" / "requirements.txt"
BUILT = REPO / "build" / "lambda-deps"
BUILT_ZIP = REPO / "build" / "lambda-deps.zip"
BUILT_HASH = REPO / "build" / "lambda-deps.inputs.sha256"
PIP_METADATA = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")
OFFLINE = re.compile(r"NewConnectionError|Temporary failure in name resolution|Network is unreachable|"
                     r"Failed to establish a new connection")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def script_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHON": sys.executable, "PIP_RETRIES": "1", **extra}


def inputs_hash(script: Path = SCRIPT, requirements: Path = REQUIREMENTS, **env: str) -> str:
    done = subprocess.run(["bash", str(script), "--inputs-hash", str(requirements)], capture_output=True, text=True,
                          env=script_env(**env), cwd=REPO, timeout=120, check=True)
    return done.stdout.strip()


def build(out_dir: Path) -> dict:
    done = subprocess.run(["bash", str(SCRIPT), str(REQUIREMENTS), str(out_dir)], capture_output=True, text=True,
                          env=script_env(FORCE="1"), cwd=REPO, timeout=900)
    if done.returncode != 0 and OFFLINE.search(done.stderr):
        pytest.skip("no access to the package index: cannot build the layer")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out_dir / "manifest.json").read_text())


def differences(left: Path, right: Path) -> list[str]:
    """Entries that differ between two layer zips (name, mode, time or content)."""
    def entries(path: Path) -> dict[str, tuple]:
        with zipfile.ZipFile(path) as archive:
            return {i.filename: (i.external_attr, i.date_time, i.CRC, i.file_size) for i in archive.infolist()}

    a, b = entries(left), entries(right)
    out = [f"only in one build: {n}" for n in sorted(set(a) ^ set(b))]
    return out + [f"differs: {n}" for n in sorted(set(a) & set(b)) if a[n] != b[n]]


def built_zip() -> Path:
    if not (BUILT_ZIP.is_file() and BUILT_HASH.is_file()):
        pytest.skip("build/lambda-deps.zip not built (make lambda-deps)")
    return BUILT_ZIP


def test_layer_build_is_reproducible(tmp_path):
    first = build(tmp_path / "first")
    first_zip = tmp_path / "first.zip"
    assert first["layer_zip"] == {"path": "first.zip", "sha256": sha256(first_zip)}
    assert (tmp_path / "first.inputs.sha256").read_text().strip() == first["inputs_sha256"]
    reference = BUILT_ZIP
    if not (BUILT_HASH.is_file() and BUILT_HASH.read_text().strip() == first["inputs_sha256"]):
        build(tmp_path / "second")  # build/lambda-deps.zip is stale or absent: build twice here
        reference = tmp_path / "second.zip"
    if sha256(first_zip) != sha256(reference):
        diff = differences(first_zip, reference)
        pytest.fail(f"two builds of the layer differ ({len(diff)} entries), e.g.:\n  " + "\n  ".join(diff[:20]))


def test_each_input_changes_the_inputs_hash(tmp_path):
    """The up-to-date check (and so what `make` ships) follows the requirements text, the build script and the
    target Python; the same inputs give the same hash."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(REQUIREMENTS.read_text())
    script = tmp_path / "build_lambda_deps.sh"
    script.write_text(SCRIPT.read_text())
    baseline = inputs_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", baseline)
    assert inputs_hash(script, requirements) == baseline  # content, not paths

    requirements.write_text(REQUIREMENTS.read_text() + "# a comment is a change too\n")
    assert inputs_hash(script, requirements) != baseline
    requirements.write_text(REQUIREMENTS.read_text())

    script.write_text(SCRIPT.read_text() + "\n# a change of the build script\n")
    assert inputs_hash(script, requirements) != baseline
    script.write_text(SCRIPT.read_text())

    assert inputs_hash(PYTHON_VERSION="3.13", LAMBDA_PYTHON="") != baseline
    assert inputs_hash(script, requirements) == baseline


def test_the_built_layer_matches_its_inputs():
    """What `make install` left in build/ is what the current inputs build (else `make lambda-deps` rebuilds it)."""
    built_zip()
    assert BUILT_HASH.read_text().strip() == inputs_hash(), "build/lambda-deps.zip is stale: make lambda-deps"
    manifest = json.loads((BUILT / "manifest.json").read_text())
    assert manifest["inputs_sha256"] == BUILT_HASH.read_text().strip()
    assert manifest["layer_zip"] == {"path": BUILT_ZIP.name, "sha256": sha256(BUILT_ZIP)}


def test_layer_zip_is_a_deterministic_archive():
    with zipfile.ZipFile(built_zip()) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names) and len(names) == len(set(names)) > 100
    assert all(n.startswith("python/") and not n.endswith("/") for n in names)  # Lambda: /opt/python
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {(i.external_attr >> 16) for i in infos} <= {0o100644, 0o100755}
    assert {i.create_system for i in infos} == {3} and not any(i.extra for i in infos)
    assert any(n.startswith("python/xgboost/") for n in names) and "python/manifest.json" not in names


def test_layer_has_no_build_host_traces():
    """On the zip as deployed: no pip install metadata, no console scripts, .pyc compiled for /opt/python."""
    manifest = json.loads((BUILT / "manifest.json").read_text()) if (BUILT / "manifest.json").is_file() else {}
    with zipfile.ZipFile(built_zip()) as archive:
        names = archive.namelist()
        leftovers = [n for n in names if n.split("/")[-1] in PIP_METADATA and ".dist-info/" in n]
        assert not leftovers, f"pip install metadata (paths, tool names) left in the layer: {leftovers[:5]}"
        assert not any(n.startswith("python/bin/") for n in names), "console scripts (build host shebangs) in the layer"

        pycs = sorted(n for n in names if n.endswith(".pyc"))
        if not pycs:
            assert manifest.get("bytecode") == "none", "the manifest says bytecode was compiled, the layer has no .pyc"
            return
        host_paths = [str(REPO).encode(), str(BUILT).encode(), b"/.staging."]
        wrong: list[str] = []
        for pyc in pycs:
            data = archive.read(pyc)
            flags = int.from_bytes(data[4:8], "little")
            parent = pyc.rsplit("/", 2)[0]  # .../__pycache__/x.cpython-312.pyc -> ...
            expected = f"/opt/{parent}/{pyc.rsplit('/', 1)[1].split('.')[0]}.py".encode()
            if flags != 0b01:  # PEP 552: hash-based (bit 0), source not checked (bit 1 clear)
                wrong.append(f"{pyc}: flags {flags}, expected unchecked-hash (1)")
            elif expected not in data:
                wrong.append(f"{pyc}: co_filename is not {expected.decode()}")
            elif any(path in data for path in host_paths):
                wrong.append(f"{pyc}: embeds a build host path")
    assert not wrong, f"{len(wrong)} .pyc are not reproducible, e.g.: {wrong[:5]}"
