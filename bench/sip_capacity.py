#!/usr/bin/env python3
"""SIP/RTP capacity benchmark. Prints figures; asserts nothing.

1. Concurrent calls: uponai (release build) calls sipp, which answers and echoes RTP
   (-rtp_echo), with recording on. For each step of N simultaneous calls it reports how many
   were answered, RTP packets both ways, the per-call p99 and max of send jitter (deviation of
   each 20 ms send from 20 ms), and uponai's CPU per call in the steady middle of the hold.
   The capacity is the largest N whose worst call keeps send-jitter p99 under 5 ms.
2. Call set-up CPU: K short calls (answered, hung up at once by the trunk) placed by uponai
   through its API, versus the same K calls placed by sipp as the UAC against an identical
   sipp UAS, in the same run; CPU seconds per call for each, and their ratio.

The workspace's limits are raised first (concurrency 2,000, custom-trunk CPS 100: the most the
bounds allow), calls are placed as fast as the pacer admits them, retrying 429 rate_limited as a
client must, and each step's calls are held long enough that all of them are up together for the
measured middle of the hold.

Usage: bench/sip_capacity.py [--steps 100,250,500,750,1000] [--hold 20] [--setup-calls 200] [--rate 20] [--smoke]
Needs: sipp (Debian sip-tester), cargo. Runs on loopback only. UPONAI_BIN picks a built binary.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import SCENARIOS, build_release, cpu_seconds, free_port, smoke_args, start_server, stop  # noqa: E402


CONCURRENCY = 2000
CPS = 100  # the most a custom trunk may have at that concurrency (concurrency / 20)


def start_uas(workdir, hold_ms):
    text = open(os.path.join(SCENARIOS, "uas_echo.xml")).read().replace("__HOLD__", str(hold_ms))
    path = os.path.join(workdir, f"uas_{hold_ms}.xml")
    open(path, "w").write(text)
    port, media_port = free_port(), free_port()
    proc = subprocess.Popen(
        ["sipp", "-sf", path, "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1", "-mp", str(media_port),
         "-rtp_echo", "-nostdin", "-t", "u1", "-max_socket", "4096"],
        cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port


def wait_all(api, call_ids, statuses, timeout):
    deadline = time.time() + timeout
    calls = {}
    while time.time() < deadline:
        calls = {cid: api.call("GET", f"/v2/get-call/{cid}") for cid in call_ids}
        if all(c["call_status"] in statuses for c in calls.values()):
            return calls
        time.sleep(0.5)
    return calls


def place(api, n, from_number, n_clients=8):
    """Places n calls from n_clients threads, each retrying rate_limited; returns their ids."""
    ids, lock, remaining = [], threading.Lock(), [n]

    def client():
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            call = api.create_call({"from_number": from_number, "to_number": "+12125550123"})
            with lock:
                ids.append(call["call_id"])

    threads = [threading.Thread(target=client) for _ in range(min(n, n_clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ids


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", default="100,250,500,750,1000")
    parser.add_argument("--hold", type=int, default=20, help="seconds all of a step's calls are up together")
    parser.add_argument("--setup-calls", type=int, default=200)
    parser.add_argument("--rate", type=int, default=20, help="calls per second in the set-up comparison")
    smoke_args(parser)
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.hold, args.setup_calls, args.rate = "4", 2, 4, 4
    if not shutil.which("sipp"):
        sys.exit("sipp is missing: apt-get install sip-tester")

    build_release()
    smoke_failures = []
    workdir = tempfile.mkdtemp(prefix="uponai-bench-")
    server, api = start_server(workdir, ["--no-audio-timeout-secs", "120"])
    steps = [int(s) for s in args.steps.split(",")]
    # Calls go out at CPS; the trunk hangs up each one after `hold_ms`, so the last call of the
    # biggest step is still placed while the first is up, with `hold` seconds of overlap.
    hold_ms = int((max(steps) / CPS + args.hold) * 1000)
    long_uas, long_port = start_uas(workdir, hold_ms)
    short_uas, short_port = start_uas(workdir, 0)
    try:
        api.call("PATCH", "/update-workspace-settings", {"concurrency_limit": CONCURRENCY, "cps_config": {"custom": CPS}})
        llm = api.call("POST", "/create-retell-llm", {"begin_message": ""})
        agent = api.call("POST", "/create-agent", {"response_engine": {"type": "retell-llm", "llm_id": llm["llm_id"]},
                                                  "voice_id": "espeak-en-us-male"})
        for number, port in (("+14155550100", long_port), ("+14155550101", short_port)):
            api.call("POST", "/import-phone-number", {
                "phone_number": number, "termination_uri": f"sip:127.0.0.1:{port};transport=udp",
                "outbound_agents": [{"agent_id": agent["agent_id"], "weight": 1}]})

        print(f"\n1. concurrent calls, RTP both ways (sipp -rtp_echo), recording on, placed at {CPS} CPS, "
              f"each held {hold_ms / 1000:.0f} s")
        print(f"{'calls':>6} {'answered':>9} {'rx/tx pkts':>11} {'p99 jitter ms (median / worst call)':>36} "
              f"{'cpu %':>7} {'cpu % per call':>15}")
        capacity = 0
        for n in steps:
            placed_at = time.time()
            ids = place(api, n, "+14155550100")
            wait_all(api, ids, ("ongoing", "ended", "not_connected", "error"), 30)
            # Every call is up from now until the first one's hold ends.
            overlap_end = placed_at + hold_ms / 1000
            time.sleep(max(0.0, (overlap_end - time.time()) * 0.25))
            cpu0, t0 = cpu_seconds(server.pid), time.time()
            time.sleep(max(0.1, (overlap_end - time.time()) * 0.6))
            cpu1, t1 = cpu_seconds(server.pid), time.time()
            calls = wait_all(api, ids, ("ended", "not_connected", "error"), hold_ms / 1000 + 120)
            answered = [c for c in calls.values() if c.get("start_timestamp")]
            stats = [c.get("media_stats", {}) for c in answered]
            p99s = [s.get("send_jitter_p99_ms", 0.0) for s in stats] or [0.0]
            rx = sum(s.get("packets_received", 0) for s in stats)
            tx = sum(s.get("packets_sent", 0) for s in stats) or 1
            cpu_pct = 100 * (cpu1 - cpu0) / (t1 - t0)
            print(f"{n:>6} {len(answered):>9} {rx / tx:>11.2f} {statistics.median(p99s):>17.2f} / {max(p99s):<16.2f} "
                  f"{cpu_pct:>7.1f} {cpu_pct / max(len(answered), 1):>15.3f}", flush=True)
            if len(answered) == n and max(p99s) < 5.0:
                capacity = n
            else:
                break
        print(f"capacity: {capacity} concurrent calls with every call's send-jitter p99 < 5 ms")
        if args.smoke and len(answered) < n:
            # Jitter on a loaded debug build is not the point of a smoke run; answered calls are.
            smoke_failures.append(f"concurrent: {len(answered)}/{n} calls answered")

        print(f"\n2. call set-up CPU, {args.setup_calls} calls at {args.rate}/s against the same kind of UAS")
        cpu0 = cpu_seconds(server.pid)
        ids = []
        for _ in range(args.setup_calls // args.rate):
            tick = time.time()
            ids += place(api, args.rate, "+14155550101")
            time.sleep(max(0.0, 1.0 - (time.time() - tick)))
        calls = wait_all(api, ids, ("ended", "not_connected", "error"), 120)
        ids = ids or [None]
        uponai_cpu = (cpu_seconds(server.pid) - cpu0) / len(ids)
        ok = sum(1 for c in calls.values() if c["call_status"] == "ended")
        sipp_uac = subprocess.Popen(
            ["sipp", f"127.0.0.1:{short_port}", "-sf", os.path.join(SCENARIOS, "uac_setup.xml"), "-i", "127.0.0.1",
             "-p", str(free_port()), "-m", str(args.setup_calls), "-r", str(args.rate), "-nostdin", "-t", "u1"],
            cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(sipp_uac.pid, 0)
        sipp_cpu = (usage.ru_utime + usage.ru_stime) / args.setup_calls
        print(f"uponai: {ok}/{len(ids)} answered, {uponai_cpu * 1000:.3f} ms CPU per call "
              f"(API request, store, SIP, media start/stop, recording files)")
        print(f"sipp UAC: exit {os.waitstatus_to_exitcode(status)}, {sipp_cpu * 1000:.3f} ms CPU per call (SIP only)")
        print(f"ratio uponai / sipp: {uponai_cpu / sipp_cpu:.2f}" if sipp_cpu > 0 else "sipp used no measurable CPU")
        if args.smoke and ok < len(ids):
            smoke_failures.append(f"set-up: {ok}/{len(ids)} calls answered")
    finally:
        stop(long_uas, short_uas, server)
        shutil.rmtree(workdir, ignore_errors=True)
    if smoke_failures:
        sys.exit("smoke run failed: " + "; ".join(smoke_failures))


if __name__ == "__main__":
    main()
