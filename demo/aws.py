"""The demo's AWS: a loopback stand-in (an embedded moto server, or one already running on 127.0.0.1), fake
credentials only, and the S3 helpers the stages use. Anything else is refused with :class:`UnsafeEnvironmentError`."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

FAKE_ACCESS_KEY = "testing"
FAKE_SECRET_KEY = "testing"
DEFAULT_REGION = "us-east-1"
# Credentials and config sources that could make a boto3 client in this process reach a real account.
_AWS_ENV_TO_CLEAR = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CREDENTIAL_EXPIRATION",
)



class UnsafeEnvironmentError(RuntimeError):
    """The demo would talk to something other than a loopback stand-in, or with real credentials: refused."""


def check_endpoint(url: str) -> str:
    """Return ``url`` if it is http(s) on a loopback address (127.0.0.0/8, ::1, localhost); else refuse."""
    parsed = urllib.parse.urlsplit(url or "")
    host = parsed.hostname or ""
    if parsed.scheme not in ("http", "https") or not host:
        raise UnsafeEnvironmentError(f"endpoint URL {url!r} is not an http(s) URL; the demo only talks to a local "
                                     "stand-in such as http://127.0.0.1:5000")
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise UnsafeEnvironmentError(f"endpoint URL {url!r} is not a loopback address; refusing to run: the demo "
                                     "never talks to AWS or any other remote host")
    return url


@contextlib.contextmanager
def patched_environ(values: dict[str, Optional[str]]) -> Iterator[None]:
    """Set (or, for None, remove) environment variables; restore the previous values on exit."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        _set_environ(values)
        yield
    finally:
        _set_environ(saved)


def _set_environ(values: dict[str, Optional[str]]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def fake_aws_environ(endpoint_url: str, region: str) -> dict[str, Optional[str]]:
    """The process environment for the demo: fake keys, no profile or credential files, every client on the stand-in.

    ``AWS_ENDPOINT_URL`` makes any boto3 client created in the process (also by code that builds its own) go to the
    stand-in; config and credential files point at an empty file so that no profile is read.
    """
    values: dict[str, Optional[str]] = {name: None for name in _AWS_ENV_TO_CLEAR}
    values.update({
        "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_KEY,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": endpoint_url,
    })
    return values


def check_client(client: Any) -> Any:
    """Refuse a client that is not on a loopback endpoint or would sign with anything but the fake keys."""
    check_endpoint(client.meta.endpoint_url)
    credentials = client._request_signer._credentials  # noqa: SLF001 (what the client will sign with)
    access_key = credentials.get_frozen_credentials().access_key if credentials else None
    if access_key != FAKE_ACCESS_KEY:
        raise UnsafeEnvironmentError("a boto3 client would use real AWS credentials (a profile or key in the "
                                     "environment); refusing to run")
    return client


def check_default_chain() -> None:
    """With the demo environment in place, boto3's default chain (what the CI/CD scripts use) must give the fakes."""
    import boto3

    credentials = boto3.session.Session().get_credentials()
    if credentials is None or credentials.get_frozen_credentials().access_key != FAKE_ACCESS_KEY:
        raise UnsafeEnvironmentError("boto3's default credential chain does not resolve to the demo's fake keys; "
                                     "refusing to run")


def reset_moto(endpoint_url: str) -> None:
    """Empty the stand-in (moto's ``/moto-api/reset``); only ever called for the embedded loopback server."""
    check_endpoint(endpoint_url)
    request = urllib.request.Request(endpoint_url.rstrip("/") + "/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def make_client(service: str, endpoint_url: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    check_endpoint(endpoint_url)
    session = boto3.session.Session(aws_access_key_id=FAKE_ACCESS_KEY, aws_secret_access_key=FAKE_SECRET_KEY,
                                    region_name=region)
    config = Config(retries={"mode": "standard", "max_attempts": 3}, s3={"addressing_style": "path"})
    return check_client(session.client(service, endpoint_url=endpoint_url, config=config))


@contextlib.contextmanager
def stand_in(endpoint_url: Optional[str], say: Callable[[str], None]) -> Iterator[str]:
    """Yield the stand-in's URL: ``endpoint_url`` (already running, loopback only) or an embedded moto server on
    127.0.0.1, started empty and emptied and stopped on exit."""
    if endpoint_url is not None:
        say(f"using the stand-in at {endpoint_url}")
        yield check_endpoint(endpoint_url)
        return
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        # moto keeps its state per process: start empty, and leave nothing behind for later users
        reset_moto(url)
        try:
            say(f"moto server (embedded, in-process, empty state) on {url}")
            yield check_endpoint(url)
        finally:
            reset_moto(url)
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------------------------------------------
def upload_tree(s3: Any, local_dir: Path, bucket: str, prefix: str) -> int:
    """Upload the data files under ``local_dir`` to ``s3://bucket/prefix/...`` (Spark's _SUCCESS/.crc skipped)."""
    count = 0
    for path in sorted(Path(local_dir).rglob("*")):
        if not path.is_file() or path.name.startswith((".", "_")):
            continue
        key = f"{prefix.rstrip('/')}/{path.relative_to(local_dir).as_posix()}"
        s3.upload_file(str(path), bucket, key)
        count += 1
    return count


def download_prefix(s3: Any, bucket: str, prefix: str, local_dir: Path) -> int:
    count = 0
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(prefix):].lstrip("/")
            target = Path(local_dir) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
            count += 1
    return count


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urllib.parse.urlsplit(uri)
    return parsed.netloc, parsed.path.lstrip("/")
