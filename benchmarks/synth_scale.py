"""Synth time against the number of models (issue 12, "Scale"): `cdk synth` of generated configs, alternately.

For each N in --models (default 1, 10, 20) a config is generated from config/<env>.yaml: N copies of the first model
spread over D datasets (copies of the first dataset; D = --datasets, default 4, at most N), written to a temporary
config dir and synthesized offline with `cdk synth -c config_dir=<dir>` (the CLI, as `make synth` runs it). Rounds
alternate the sizes (1, 10, 20, 1, 10, 20, ...) so that a change in the machine's load hits every size alike; the
medians, the cost per extra model and the ratio to one model are printed and written to benchmarks/results/.

    .venv/bin/python benchmarks/synth_scale.py --rounds 2
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"


def scaled_config(env: str, models: int, datasets: int) -> dict:
    """``config/<env>.yaml`` with ``models`` copies of its first model over ``datasets`` copies of its first dataset."""
    base = yaml.safe_load((ROOT / "config" / f"{env}.yaml").read_text())
    dataset, model = base["datasets"][0], base["models"][0]
    data = copy.deepcopy(base)
    data["datasets"] = [dict(copy.deepcopy(dataset), name=dataset["name"] if d == 0 else f"{dataset['name']}{d}")
                        for d in range(min(datasets, models))]
    data["models"] = [dict(copy.deepcopy(model), name=model["name"] if m == 0 else f"m{m}",
                           dataset=data["datasets"][m % len(data["datasets"])]["name"]) for m in range(models)]
    return data


def synth(config_dir: Path, env: str, out: Path) -> tuple[float, int, int]:
    """Wall seconds of one `cdk synth`, and the number of stacks and resources it wrote."""
    environ = {k: v for k, v in os.environ.items() if k != "AWS_PROFILE"}
    environ.update(CDK_DISABLE_CLI_TELEMETRY="true", CDK_DISABLE_VERSION_CHECK="true",
                   JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20", JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION="1")
    start = time.perf_counter()
    subprocess.run([str(CDK), "synth", "--quiet", "--no-notices", "-c", f"env={env}", "-c", f"config_dir={config_dir}",
                    "-o", str(out)], cwd=ROOT, env=environ, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    templates = list(out.glob("*.template.json"))
    resources = sum(len(json.loads(t.read_text()).get("Resources", {})) for t in templates)
    return seconds, len(templates), resources


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="dev")
    parser.add_argument("--models", type=int, nargs="+", default=[1, 10, 20])
    parser.add_argument("--datasets", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--label", default="now")
    args = parser.parse_args()
    runs: dict[int, list[float]] = {n: [] for n in args.models}
    sizes: dict[int, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="synth-scale-") as tmp:
        for n in args.models:
            (Path(tmp) / f"c{n}").mkdir()
            (Path(tmp) / f"c{n}" / f"{args.env}.yaml").write_text(
                yaml.safe_dump(scaled_config(args.env, n, args.datasets), sort_keys=False))
        for r in range(args.rounds):
            for n in args.models:
                seconds, stacks, resources = synth(Path(tmp) / f"c{n}", args.env, Path(tmp) / f"out{n}-{r}")
                runs[n].append(seconds)
                sizes[n] = (stacks, resources)
                print(f"round {r + 1}: {n:>2} model(s): {seconds:6.1f} s, {stacks} stacks, {resources} resources",
                      flush=True)
    medians = {n: statistics.median(v) for n, v in runs.items()}
    first, last = min(args.models), max(args.models)
    per_model = (medians[last] - medians[first]) / (last - first) if last > first else 0.0
    summary = {
        "label": args.label, "env": args.env, "datasets": args.datasets, "rounds": args.rounds,
        "median_seconds": medians, "stacks_resources": sizes, "seconds_per_extra_model": round(per_model, 2),
        "ratio_largest_to_one": round(medians[last] / medians[first], 2), "load_average": os.getloadavg(),
    }
    print(json.dumps(summary, indent=2))
    out = ROOT / "benchmarks" / "results" / f"synth_scale-{args.label}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
