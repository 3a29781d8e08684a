"""Shared by the benchmarks: ports, CPU time, the API, a release server, sipp."""

import json
import os
import socket
import subprocess
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = os.path.join(ROOT, "bench", "scenarios")
KEY = "key_bench_0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    """A port free on 127.0.0.1 for both UDP and TCP right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Api:
    def __init__(self, url):
        self.url = url

    def call(self, method, path, body=None):
        """The parsed JSON answer; raises urllib.error.HTTPError for non-2xx."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            text = resp.read()
            return json.loads(text) if text else None


def build_release():
    print("building uponai (release)...", flush=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "uponai"], cwd=ROOT, check=True)


def start_server(workdir, extra_args=()):
    """A release uponai on fresh ports; returns (process, Api)."""
    http_port, sip_port = free_port(), free_port()
    env = dict(os.environ, UPONAI_API_KEY=KEY, RUST_LOG="warn")
    server = subprocess.Popen(
        [os.path.join(ROOT, "target", "release", "uponai"), "serve", "--data-dir", os.path.join(workdir, "data"),
         "--http", f"127.0.0.1:{http_port}", "--sip", f"127.0.0.1:{sip_port}", "--rtp-ports", "20000-39999", "--allow-private-targets",
         *extra_args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in server.stdout:
        if "listening" in line:
            break
    return server, Api(f"http://127.0.0.1:{http_port}")


def start_sipp_uas(workdir, scenario, replacements, extra_args=()):
    """sipp as a trunk from a scenario template; returns (process, port)."""
    text = open(os.path.join(SCENARIOS, scenario)).read()
    for old, new in replacements.items():
        text = text.replace(old, new)
    path = os.path.join(workdir, f"{free_port()}-{os.path.basename(scenario)}")
    open(path, "w").write(text)
    port, media_port = free_port(), free_port()
    proc = subprocess.Popen(
        ["sipp", "-sf", path, "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1", "-mp", str(media_port),
         "-nostdin", "-t", "u1", "-max_socket", "2048", *extra_args],
        cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port


def stop(*procs):
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def percentile(values, q):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
