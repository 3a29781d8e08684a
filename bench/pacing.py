#!/usr/bin/env python3
"""Pacing benchmark. Prints figures; asserts nothing.

For a Twilio-type number at 5 CPS and a Telnyx-type number at 16 CPS, clients push
create-phone-call as hard as the API lets them for --seconds, sleeping exactly what each 429's
retry-after-ms says. sipp (the trunk) timestamps every INVITE it receives. Reported per run:
achieved rate vs configured, the most INVITEs in any one-second window, the gap between
consecutive INVITEs (p50/p99) vs the ideal 1/CPS, and create-phone-call → INVITE-on-the-wire
latency (p50/p99) for accepted requests.

Usage: bench/pacing.py [--seconds 35] [--clients 4] [--smoke]
"""

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.error

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, build_release, percentile, smoke_args, start_server, start_sipp_uas, stop  # noqa: E402


def place(api, number, seq):
    """One create-phone-call tagged X-Seq; None if accepted, else the HTTP error."""
    try:
        api.call("POST", "/v2/create-phone-call", {"from_number": number, "to_number": "+12125550123",
                                                   "custom_sip_headers": {"X-Seq": seq}})
        return None
    except urllib.error.HTTPError as err:
        return err


def drive(api, number, tag, seconds, n_clients):
    """Pushes calls for `seconds`; returns {seq: send time} of accepted requests and counts."""
    accepted, lock, counts = {}, threading.Lock(), {"429": 0, "other": 0}
    deadline = time.time() + seconds

    def client(index):
        n = 0
        while time.time() < deadline:
            seq = f"{tag}-{index}-{n}"
            n += 1
            sent = time.time()
            err = place(api, number, seq)
            with lock:
                if err is None:
                    accepted[seq] = sent
                else:
                    counts["429" if err.code == 429 else "other"] += 1
            if err is not None and err.code == 429:
                time.sleep(float(err.headers.get("retry-after-ms", "100")) / 1000)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return accepted, counts


def drive_under_budget(api, number, tag, cps, seconds):
    """One call every 1/(0.8·cps) s: within budget, so no call should wait for a slot."""
    accepted, counts = {}, {"429": 0, "other": 0}
    interval = 1.0 / (0.8 * cps)
    next_at = time.time()
    deadline = next_at + seconds
    n = 0
    while time.time() < deadline:
        time.sleep(max(0.0, next_at - time.time()))
        seq = f"{tag}-u-{n}"
        n += 1
        sent = time.time()
        err = place(api, number, seq)
        if err is None:
            accepted[seq] = sent
        else:
            counts["429" if err.code == 429 else "other"] += 1
        next_at += interval
    return accepted, counts


def read_invites(message_log):
    """X-Seq → receive time (epoch s) of the first INVITE of each call."""
    received, stamp = {}, None
    lines = open(message_log, errors="replace").read().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("----------------------------------------------- "):
            stamp = datetime.datetime.strptime(line.split(" ", 1)[1].strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        elif "message received" in line and i + 2 < len(lines) and lines[i + 2].startswith("INVITE "):
            j = i + 2
            while j < len(lines) and not lines[j].startswith("-----------------------------------------------"):
                if lines[j].startswith("X-Seq:"):
                    seq = lines[j].split(":", 1)[1].strip()
                    received.setdefault(seq, stamp)
                j += 1
        i += 1
    return received


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=35)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--under-budget-seconds", type=int, default=15)
    smoke_args(parser)
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.clients, args.under_budget_seconds = 2, 2, 1
    if not shutil.which("sipp"):
        sys.exit("sipp is missing: apt-get install sip-tester")
    build_release()
    smoke_failures = []
    workdir = tempfile.mkdtemp(prefix="uponai-pacing-")
    log = os.path.join(workdir, "messages.log")
    server, api = start_server(workdir)
    reject = os.path.join(ROOT, "crates", "uponai", "tests", "sip", "scenarios", "reject.xml")
    sipp, sipp_port = start_sipp_uas(workdir, reject, {"__STATUS__": "486"},
                                     ["-trace_msg", "-message_file", log])
    try:
        trunk = {"termination_uri": f"sip:127.0.0.1:{sipp_port};transport=udp"}
        api.call("PATCH", "/update-workspace-settings", {"twilio_trunk": trunk, "telnyx_trunk": trunk,
                                                       "cps_config": {"twilio": 5, "telnyx": 16}, "concurrency_limit": 1000})
        llm = api.call("POST", "/create-retell-llm", {"begin_message": ""})
        agent = api.call("POST", "/create-agent", {"response_engine": {"type": "retell-llm", "llm_id": llm["llm_id"]},
                                                  "voice_id": "espeak-en-us-male"})
        runs = [("twilio", 5, "+14155550100"), ("telnyx", 16, "+14155550101")]
        for provider, _, number in runs:
            api.call("POST", "/create-phone-number", {"phone_number": number, "number_provider": provider,
                                                     "outbound_agents": [{"agent_id": agent["agent_id"], "weight": 1}]})
        results = []
        for provider, cps, number in runs:
            print(f"running {provider} at {cps} CPS for {args.seconds} s with {args.clients} clients...", flush=True)
            accepted, counts = drive(api, number, provider, args.seconds, args.clients)
            time.sleep(2)
            results.append((f"{provider} saturated", cps, accepted, counts))
            print(f"running {provider} at 80% of {cps} CPS for {args.under_budget_seconds} s...", flush=True)
            accepted, counts = drive_under_budget(api, number, provider, cps, args.under_budget_seconds)
            time.sleep(2)
            results.append((f"{provider} 80%", cps, accepted, counts))
        time.sleep(1)
        received = read_invites(log)
        print(f"\n{'run':>17} {'cps':>4} {'accepted':>9} {'429s':>6} {'INVITEs':>8} {'achieved/s':>11} {'busiest 1s':>11} "
              f"{'gap p50/p99 ms (ideal)':>24} {'create→INVITE p50/p99 ms':>26}")
        for provider, cps, accepted, counts in results:
            times = sorted(received[s] for s in accepted if s in received)
            latencies = [1000 * (received[s] - t) for s, t in accepted.items() if s in received]
            gaps = [1000 * (b - a) for a, b in zip(times, times[1:])]
            busiest = max((sum(1 for t in times[i:] if t - times[i] < 1.0) for i in range(len(times))), default=0)
            rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
            print(f"{provider:>17} {cps:>4} {len(accepted):>9} {counts['429']:>6} {len(times):>8} {rate:>11.2f} {busiest:>11} "
                  f"{percentile(gaps, 0.5):>8.1f} / {percentile(gaps, 0.99):<6.1f} ({1000 / cps:.1f}) "
                  f"{percentile(latencies, 0.5):>12.1f} / {percentile(latencies, 0.99):<8.1f}")
            if args.smoke and (not accepted or len(times) < len(accepted) or busiest > cps):
                smoke_failures.append(f"{provider}: {len(accepted)} accepted, {len(times)} INVITEs seen, busiest second {busiest}")
    finally:
        stop(sipp, server)
        shutil.rmtree(workdir, ignore_errors=True)
    if smoke_failures:
        sys.exit("smoke run failed: " + "; ".join(smoke_failures))


if __name__ == "__main__":
    main()
