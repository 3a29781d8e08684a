"""Shared by the benchmarks: ports, CPU time, the API, a release server, sipp."""

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIOS = os.path.join(ROOT, "bench", "scenarios")
KEY = "key_bench_0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# Ports handed to the benchmark's own listeners and sipp: blocks of four (sipp binds its -mp port
# and that port + 2) from a range below the kernel's ephemeral ports (32768-60999) and outside
# the server's RTP range, so no port handed out here can be taken by someone else's bind(0).
BENCH_PORTS = (12000, 19999)
RTP_PORTS = "20000-31999"
_next_port = [BENCH_PORTS[0] + 4 * (os.getpid() % 500)]


def _bindable(port):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        for offset in (0, 2):
            with socket.socket(socket.AF_INET, kind) as s:
                try:
                    s.bind(("127.0.0.1", port + offset))
                except OSError:
                    return False
    return True


def free_port():
    """A port of BENCH_PORTS free for UDP and TCP (and port + 2 too), never handed out twice."""
    for _ in range((BENCH_PORTS[1] - BENCH_PORTS[0]) // 4):
        port = _next_port[0]
        _next_port[0] = port + 4 if port + 8 <= BENCH_PORTS[1] else BENCH_PORTS[0]
        if _bindable(port):
            return port
    raise RuntimeError("no free port in the benchmark range")


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

    def create_call(self, body, max_attempts=50):
        """create-phone-call as a client must do it: the SDKs never retry it by themselves, so a
        429 rate_limited is retried here after its retry-after-ms (or a doubling backoff)."""
        delay = 0.1
        for attempt in range(max_attempts):
            try:
                return self.call("POST", "/v2/create-phone-call", body)
            except urllib.error.HTTPError as err:
                if err.code != 429 or attempt + 1 == max_attempts:
                    raise
                hinted = err.headers.get("retry-after-ms")
                time.sleep(float(hinted) / 1000 if hinted else delay)
                delay = min(delay * 2, 2.0)


def server_binary():
    """UPONAI_BIN if set (the test suite's smoke runs use its debug build), else the release build."""
    return os.environ.get("UPONAI_BIN") or os.path.join(ROOT, "target", "release", "uponai")


def build_release():
    if os.environ.get("UPONAI_BIN"):
        return
    print("building uponai (release)...", flush=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "uponai"], cwd=ROOT, check=True)


def smoke_args(parser):
    """--smoke: a tiny run (a few calls, seconds) that only proves the benchmark still works."""
    parser.add_argument("--smoke", action="store_true", help="a few calls in a few seconds, to keep the script working")


def start_server(workdir, extra_args=()):
    """A release uponai on fresh ports; returns (process, Api)."""
    http_port, sip_port = free_port(), free_port()
    env = dict(os.environ, UPONAI_API_KEY=KEY, RUST_LOG="warn")
    server = subprocess.Popen(
        [server_binary(), "serve", "--data-dir", os.path.join(workdir, "data"),
         "--http", f"127.0.0.1:{http_port}", "--sip", f"127.0.0.1:{sip_port}", "--rtp-ports", RTP_PORTS, "--allow-private-targets",
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
