"""Starts a real `uponai serve` on a fresh data directory for the SDK suite."""

import os
import re
import subprocess
import tempfile

import pytest
from retell import Retell

KEY = "key_sdk_suite_0123456789"


@pytest.fixture(scope="session")
def server():
    binary = os.environ["UPONAI_BIN"]
    data_dir = tempfile.mkdtemp(prefix="uponai-sdk-")
    env = dict(os.environ, UPONAI_API_KEY=KEY, RUST_LOG="warn")
    proc = subprocess.Popen(
        [binary, "serve", "--http", "127.0.0.1:0", "--data-dir", data_dir, "--allow-private-targets"],
        stdout=subprocess.PIPE, stderr=None, env=env, text=True,
    )
    url = None
    for line in proc.stdout:
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            url = match.group(1)
            break
    assert url, "server did not report its address"
    # The suite places many calls quickly; pacing is tested on the second workspace.
    import httpx
    httpx.patch(f"{url}/update-workspace-settings", headers={"Authorization": f"Bearer {KEY}"},
                json={"concurrency_limit": 10000, "cps_config": {"custom": 500}}).raise_for_status()
    yield {"url": url, "data_dir": data_dir, "binary": binary}
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def client(server):
    return Retell(api_key=KEY, base_url=server["url"])


@pytest.fixture(scope="session")
def other_client(server):
    """A client whose key belongs to a second workspace."""
    out = subprocess.run(
        [server["binary"], "keys", "create", "--new-workspace", "other", "--data-dir", server["data_dir"]],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    return Retell(api_key=out[1], base_url=server["url"])
