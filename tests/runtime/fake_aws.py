"""Fake AWS settings for tests that talk to moto or a local SigV4 server: never a real profile, file or proxy."""

from __future__ import annotations

from pathlib import Path

import pytest

UNSET = ("AWS_PROFILE", "CODEBUILD_RESOLVED_SOURCE_VERSION", "CODEBUILD_BUILD_ID", "HTTP_PROXY", "HTTPS_PROXY",
         "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")


def fake_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, region: str) -> None:
    """Credentials testing/testing/testing-token, ``region``, no config or credentials file, loopback not proxied."""
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing-token")
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.setenv("AWS_REGION", region)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
