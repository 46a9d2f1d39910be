"""Session-wide set-up: no AWS credentials, no telemetry, quiet jsii."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

for var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
    os.environ.pop(var, None)
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("SAGEMAKER_TELEMETRY_OPT_OUT", "true")
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


# ---- pytest-xdist (pytest.ini: -n auto --dist loadgroup) ------------------------------------------------------------
# Tests of one xdist group run on one worker, one after another. Two reasons to group:
# - shared global state: the rehearsal stages the SageMaker containers' fixed /opt/ml, so its tests never run
#   concurrently with each other;
# - an expensive session fixture: the synthesized dev and prod apps (tests/infra/conftest.py) take most of a worker's
#   time to build; every test that reads them runs where they are built, so each app is synthesized once per run
#   instead of once per worker;
# - the rest by module: module-scoped fixtures (a Spark session, trained models, the demo's run) are built once, not
#   once on each worker that gets one of the module's tests (most runtime modules have several). The largest module
#   (test_glue_transform.py) then bounds the wall time from below; TEST_GROUPING=test distributes those tests one by
#   one instead (for an A/B on a quiet machine: benchmarks/README.md).
SERIAL_DIRS = {"rehearsal": "opt-ml"}
SESSION_APPS = {"dev", "prod", "synthesized"}


def xdist_group(item) -> str | None:
    parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
    if parts[0] in SERIAL_DIRS:
        return SERIAL_DIRS[parts[0]]
    if SESSION_APPS & set(getattr(item, "fixturenames", ())):
        return "synthesized-apps"
    return "/".join(parts) if os.environ.get("TEST_GROUPING", "module") == "module" else None


import pytest  # noqa: E402


# tryfirst: xdist's worker reads the xdist_group marks in its own pytest_collection_modifyitems (it appends
# "@<group>" to the node id); a mark added after that hook would be ignored and the group would not hold.
# (pytest 9.2 with xdist 3.8 ignores every group: pytest now keeps the node id in Node._id, and xdist still writes
# Node._nodeid; requirements-dev.txt pins pytest 8.4 for that reason, and a test checks that groups hold.)
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        group = xdist_group(item)
        if group and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(group))
