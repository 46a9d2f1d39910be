"""The construct library stands alone: no construct finds the repository or reads the config (DESIGN.md, "Layers")."""

from __future__ import annotations

import re
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent.parent / "mlops_constructs"


def test_no_construct_computes_the_repository_root_or_reads_the_config():
    offenders = []
    for path in sorted(LIBRARY.glob("*.py")):
        text = path.read_text()
        if re.search(r"parent\.parent|REPO_ROOT|\bROOT\s*=", text):
            offenders.append(f"{path.name}: computes the repository root (take the code location as a prop)")
        if re.search(r"^\s*(from|import) platform_config(\.schema|\.loader)?\b(?!\.names)", text, re.MULTILINE):
            offenders.append(f"{path.name}: imports the config (take props; stacks translate the config)")
    assert not offenders, offenders
