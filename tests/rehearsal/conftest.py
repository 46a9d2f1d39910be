"""The rehearsal's tests synthesize dev ONCE per session (assets staged, as `cdk synth` stages them) and start one
stand-in account per test that needs it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rehearsal.assembly import Assembly


@pytest.fixture(scope="session")
def dev_assembly_dir(tmp_path_factory) -> Path:
    """cdk.out of dev with every serving stack, assets staged (what `cdk deploy` uploads)."""
    from platform_config import load_config
    from stacks.app_builder import build_app

    outdir = tmp_path_factory.mktemp("rehearsal-cdk-dev")
    build_app(load_config("dev"), outdir=outdir, nag=False, extra_context={"serving": "all"}).synth()
    return outdir


@pytest.fixture()
def assembly_copy(dev_assembly_dir, tmp_path) -> Path:
    """A private copy of the assembly a test may edit (to reintroduce a defect); large assets are linked, not copied."""
    target = tmp_path / "cdk.out"
    target.mkdir()
    for item in dev_assembly_dir.iterdir():
        if item.is_dir():
            (target / item.name).symlink_to(item)
        else:
            shutil.copy2(item, target / item.name)
    return target


@pytest.fixture()
def dev_assembly(dev_assembly_dir) -> Assembly:
    return Assembly(dev_assembly_dir)
