#!/usr/bin/env python3
"""Where the time of a synth goes: import, construct, validation, asset staging, CLI; and the CLI on an empty app.

    .venv/bin/python benchmarks/synth_breakdown.py [--env dev] [--rounds 3] [--serving all] [--label before]

Each measurement runs in a fresh process (imports and the jsii kernel are per process), and the variants alternate
round by round (A, B, C, A, B, C, ...) so that load on a shared machine spreads over all of them; medians reported.

In-process phases (``python app``-equivalent, the CLI not involved):
- ``import_cdk``: ``import aws_cdk, constructs, cdk_nag`` (starts the jsii kernel, loads the assemblies);
- ``import_sagemaker``: ``import sagemaker`` (the pipeline definition's SDK), separately;
- ``import_project``: the rest of ``stacks.app_builder``'s imports, plus loading the config;
- ``construct``: building the app tree (``build_app``); asset fingerprinting and copying happen here, in each
  asset's constructor;
- ``synth``: ``app.synth()`` (prepare, aspects = cdk-nag, validation, writing templates and manifests).
Derived (differences of variants, medians):
- ``validation`` = synth(cdk-nag on) - synth(cdk-nag off);
- ``asset_copy`` = construct(staged) - construct(asset staging disabled: fingerprint only, no copy);
- ``layer_asset`` = construct(real layer) - construct(a stub layer of one file): fingerprint + copy of the layer;
- ``cli`` = wall(``cdk synth``) - wall(``python app.py`` with the CLI's environment): node start, CLI, reading the
  assembly.
CLI rounds: ``cdk synth`` of this app and of ``benchmarks/empty_app.py`` (one stack, one resource) alternately.
jsii round trips (requests from Python to the kernel, callbacks included) are counted per phase.

Writes benchmarks/results/synth_breakdown-<label>.json (with the host's load average) and prints a table.
"""

from __future__ import annotations

import argparse
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

REPO = Path(__file__).resolve().parent.parent
CDK = REPO / "node_modules" / ".bin" / "cdk"
EMPTY_APP = REPO / "benchmarks" / "empty_app.py"
RESULTS = REPO / "benchmarks" / "results"
QUIET_ENV = {
    "CDK_DISABLE_CLI_TELEMETRY": "true",
    "CDK_DISABLE_VERSION_CHECK": "true",
    "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    "SAGEMAKER_TELEMETRY_OPT_OUT": "true",
}


# ---- child: one in-process synth, phase by phase ---------------------------------------------------------------------
def child(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO))
    calls = {"n": 0}
    marks: dict[str, float] = {}
    trips: dict[str, int] = {}
    last = [time.perf_counter(), 0]

    def mark(name: str) -> None:
        now = time.perf_counter()
        marks[name] = round(now - last[0], 3)
        trips[name] = calls["n"] - last[1]
        last[0], last[1] = now, calls["n"]

    from jsii._kernel.providers import process as jsii_process

    original_send = jsii_process._NodeProcess.send

    def counting_send(self, request, response_type):
        calls["n"] += 1
        return original_send(self, request, response_type)

    jsii_process._NodeProcess.send = counting_send

    import aws_cdk  # noqa: F401
    import cdk_nag  # noqa: F401
    import constructs  # noqa: F401

    mark("import_cdk")
    import sagemaker  # noqa: F401

    mark("import_sagemaker")
    from platform_config import load_config
    from stacks import app_builder, code_locations

    config = load_config(args.env)
    mark("import_project")
    if args.stub_layer:
        stub = Path(tempfile.mkdtemp(prefix="stub-layer-"))
        layer = code_locations.INFERENCE_DEPENDENCIES
        if layer.suffix == ".zip":  # the layer as one archive: a one-file archive in its place
            import zipfile

            target = stub / "lambda-deps.zip"
            with zipfile.ZipFile(target, "w") as archive:
                archive.writestr("python/stub.py", "")
            hash_file = layer.with_name(layer.name + ".sha256")
            if hash_file.exists():
                target.with_name(target.name + ".sha256").write_text("0" * 64 + "\n")
        else:
            target = stub
            (stub / "python").mkdir()
            (stub / "python" / "stub.py").write_text("")
        for module in list(sys.modules.values()):  # every `from stacks.code_locations import ...` binding
            if getattr(module, "__name__", "").startswith(("stacks", "tests")) and hasattr(
                module, "INFERENCE_DEPENDENCIES"
            ):
                module.INFERENCE_DEPENDENCIES = target
    outdir = Path(tempfile.mkdtemp(prefix="synth-breakdown-"))
    context = {}
    if args.serving:
        context["serving"] = args.serving
    if not args.staging:
        context["aws:cdk:disable-asset-staging"] = True
    platform_app = app_builder.build_app(config, outdir=outdir, nag=args.nag, extra_context=context)
    mark("construct")
    platform_app.synth()
    mark("synth")
    size = sum(p.stat().st_size for p in outdir.rglob("*") if p.is_file())
    shutil.rmtree(outdir, ignore_errors=True)
    print(json.dumps({"phases": marks, "jsii_calls": trips, "cdk_out_mb": round(size / 2**20, 1)}))


# ---- parent ----------------------------------------------------------------------------------------------------------
def env_for_child() -> dict[str, str]:
    env = {**os.environ, **QUIET_ENV}
    env.pop("AWS_PROFILE", None)
    return env


def in_process(args: argparse.Namespace, *, nag: bool, staging: bool, stub_layer: bool) -> dict:
    command = [sys.executable, __file__, "--child", "--env", args.env]
    if args.serving:
        command += ["--serving", args.serving]
    command += [] if nag else ["--no-nag"]
    command += [] if staging else ["--no-staging"]
    command += ["--stub-layer"] if stub_layer else []
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env_for_child(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = round(wall, 3)
    return result


def cli_context(args: argparse.Namespace) -> dict:
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    context["env"] = args.env
    if args.serving:
        context["serving"] = args.serving
    return context


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, command))} failed:\n{done.stderr[-3000:]}")
    return round(wall, 3)


def cdk_synth(args: argparse.Namespace, app: str | None, outdir: Path) -> float:
    shutil.rmtree(outdir, ignore_errors=True)
    command = [str(CDK), "synth", "--quiet", "--no-notices", "-o", str(outdir), "-c", f"env={args.env}"]
    if args.serving and app is None:
        command += ["-c", f"serving={args.serving}"]
    if app is not None:
        command += ["--app", app]
    return timed(command, env_for_child())


def app_alone(args: argparse.Namespace, outdir: Path) -> float:
    """``python app.py`` as the CLI runs it (CDK_OUTDIR, CDK_CONTEXT_JSON), without the CLI."""
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    env = {**env_for_child(), "CDK_OUTDIR": str(outdir), "CDK_CONTEXT_JSON": json.dumps(cli_context(args))}
    return timed([str(REPO / ".venv" / "bin" / "python"), "app.py"], env)


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="dev")
    parser.add_argument("--serving", default="", help="serving context (e.g. all: with the Lambda layer)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--label", default="current")
    parser.add_argument("--skip-cli", action="store_true", help="in-process phases only (no cdk synth rounds)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-nag", dest="nag", action="store_false", help=argparse.SUPPRESS)
    parser.add_argument("--no-staging", dest="staging", action="store_false", help=argparse.SUPPRESS)
    parser.add_argument("--stub-layer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    variants = {
        "full": dict(nag=True, staging=True, stub_layer=False),
        "no_nag": dict(nag=False, staging=True, stub_layer=False),
        "no_staging": dict(nag=True, staging=False, stub_layer=False),
    }
    if args.serving:
        variants["stub_layer"] = dict(nag=True, staging=True, stub_layer=True)
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    cli: dict[str, list[float]] = {"cdk_synth": [], "app_alone": [], "cdk_synth_empty_app": []}
    work = Path(tempfile.mkdtemp(prefix="synth-breakdown-cli-"))
    empty_app = f"{REPO / '.venv' / 'bin' / 'python'} {EMPTY_APP}"
    for round_ in range(args.rounds):
        for name, options in variants.items():
            runs[name].append(in_process(args, **options))
        if not args.skip_cli:
            cli["cdk_synth"].append(cdk_synth(args, None, work / "app"))
            cli["cdk_synth_empty_app"].append(cdk_synth(args, empty_app, work / "empty"))
            cli["app_alone"].append(app_alone(args, work / "alone"))
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)

    def phase(name: str, key: str) -> float:
        return median([r["phases"][key] for r in runs[name]])

    full = {key: phase("full", key) for key in runs["full"][0]["phases"]}
    derived = {
        "validation (cdk-nag aspects)": round(phase("full", "synth") - phase("no_nag", "synth"), 3),
        "asset copy into cdk.out": round(phase("full", "construct") - phase("no_staging", "construct"), 3),
    }
    if "stub_layer" in runs:
        derived["Lambda layer asset (fingerprint + copy)"] = round(
            phase("full", "construct") - phase("stub_layer", "construct"), 3
        )
    result = {
        "label": args.label,
        "env": args.env,
        "serving": args.serving or None,
        "rounds": args.rounds,
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                 "python": platform.python_version()},
        "in_process_median_s": full,
        "in_process_wall_median_s": median([r["wall"] for r in runs["full"]]),
        "jsii_calls": runs["full"][0]["jsii_calls"],
        "cdk_out_mb": runs["full"][0]["cdk_out_mb"],
        "derived_median_s": derived,
        "variants_median_s": {name: {k: phase(name, k) for k in runs[name][0]["phases"]} for name in runs},
        "raw": runs,
    }
    if not args.skip_cli:
        synth, alone, empty = median(cli["cdk_synth"]), median(cli["app_alone"]), median(cli["cdk_synth_empty_app"])
        result["cli_median_s"] = {"cdk_synth": synth, "python_app_alone": alone, "cli_overhead": round(synth - alone, 3),
                                  "cdk_synth_empty_app": empty, "ratio_to_empty_app": round(synth / empty, 2)}
        result["cli_raw_s"] = cli
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"synth_breakdown-{args.label}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"synth breakdown, env={args.env} serving={args.serving or '-'}, {args.rounds} rounds (medians, seconds), "
          f"load average {os.getloadavg()[0]:.2f}")
    for key, value in full.items():
        print(f"  {key:<40} {value:7.2f}   jsii calls {result['jsii_calls'][key]}")
    print(f"  {'in-process wall (python start included)':<40} {result['in_process_wall_median_s']:7.2f}")
    for key, value in derived.items():
        print(f"  {key:<40} {value:7.2f}")
    if not args.skip_cli:
        for key, value in result["cli_median_s"].items():
            print(f"  {key:<40} {value:7.2f}")
    print(f"  cdk.out {result['cdk_out_mb']} MB; written {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
