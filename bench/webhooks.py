#!/usr/bin/env python3
"""Webhook delivery benchmark. Prints figures; asserts nothing.

Calls to a trunk that refuses connections fail at once, each sending call_failed, call_ended
and call_analyzed. One receiver (Python's ThreadingHTTPServer, answering 204) records when each
event arrives.

1. Live: --calls calls with the receiver up. Latency = arrival − the call's end_timestamp
   (from the payload), p50/p99, for each call's first event (written with the call's end) and
   last event (after two round trips in order).
2. Backlog: the same number of calls while the receiver is down (retries every 50-100 ms here,
   so retry timers barely delay the drain), then it comes up: how long the backlog takes to
   drain, in events per second.
3. Peer, same run: a plain Python sender (one HMAC-signed POST at a time per thread, as many
   threads as uponai keeps in flight) sends the same number of bodies to the same receiver:
   the receiver's own ceiling. Reported: uponai's drain rate as a ratio of the peer's.

Usage: bench/webhooks.py [--calls 200] [--smoke]
"""

import argparse
import hashlib
import hmac
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import KEY, build_release, free_port, percentile, smoke_args, start_server, stop  # noqa: E402

IN_FLIGHT = 32  # uponai's deliverer keeps at most this many attempts in flight.


class Receiver(http.server.ThreadingHTTPServer):
    """One connection per request (HTTP/1.0), so nothing outlives a stopped receiver."""
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, port):
        self.arrivals = []  # (time.time(), parsed body)
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", port), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def wait_for(self, count, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.arrivals) >= count:
                    return True
            time.sleep(0.01)
        return False


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        now = time.time()
        with self.server.lock:
            self.server.arrivals.append((now, json.loads(body)))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def place_failing_calls(api, n, offset):
    for i in range(n):
        api.call("POST", "/v2/create-phone-call", {"from_number": "+14155550100", "to_number": f"+1212555{offset + i:04d}"})


def live(api, port, calls):
    receiver = Receiver(port)
    place_failing_calls(api, calls, 1000)
    receiver.wait_for(3 * calls, 120)
    receiver.shutdown()
    receiver.server_close()
    firsts, lasts = [], []
    for arrived, body in receiver.arrivals:
        latency_ms = arrived * 1000 - body["call"]["end_timestamp"]
        (firsts if body["event"] == "call_failed" else lasts if body["event"] == "call_analyzed" else []).append(latency_ms)
    return len(receiver.arrivals), firsts, lasts


def backlog(api, port, calls):
    place_failing_calls(api, calls, 5000)
    time.sleep(3)  # every call has ended; heads are being retried against the closed port
    receiver = Receiver(port)
    started = time.time()
    done = receiver.wait_for(3 * calls, 300)
    elapsed = receiver.arrivals[-1][0] - started if receiver.arrivals else float("nan")
    spread = receiver.arrivals[-1][0] - receiver.arrivals[0][0] if receiver.arrivals else float("nan")
    receiver.shutdown()
    receiver.server_close()
    return done, len(receiver.arrivals), elapsed, spread


def peer(port, bodies):
    """The same bodies, signed, from IN_FLIGHT plain sender threads."""
    receiver = Receiver(port)
    url = f"http://127.0.0.1:{port}/hook"
    queue, lock = list(bodies), threading.Lock()

    def sender():
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            ts = str(int(time.time() * 1000))
            digest = hmac.new(KEY.encode(), (body + ts).encode(), hashlib.sha256).hexdigest()
            req = urllib.request.Request(url, data=body.encode(), method="POST", headers={
                "Content-Type": "application/json", "x-retell-signature": f"v={ts},d={digest}"})
            urllib.request.urlopen(req, timeout=10).read()

    started = time.time()
    threads = [threading.Thread(target=sender) for _ in range(IN_FLIGHT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - started
    receiver.shutdown()
    receiver.server_close()
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--no-build", action="store_true")
    smoke_args(parser)
    args = parser.parse_args()
    if args.smoke:
        args.calls = 5
    if not args.no_build:
        build_release()
    work = tempfile.mkdtemp(prefix="uponai-bench-webhooks-")
    port = free_port()
    server, api = start_server(work, ["--webhook-retry-base-ms", "50", "--webhook-retry-cap-ms", "100", "--webhook-max-attempts", "1000"])
    try:
        api.call("PATCH", "/update-workspace-settings", {"concurrency_limit": 10000, "cps_config": {"custom": 500},
                                                        "webhook_url": f"http://127.0.0.1:{port}/hook"})
        llm = api.call("POST", "/create-retell-llm", {"begin_message": ""})
        agent = api.call("POST", "/create-agent", {"voice_id": "espeak-en-us-male",
                                                   "response_engine": {"type": "retell-llm", "llm_id": llm["llm_id"]}})
        api.call("POST", "/import-phone-number", {"phone_number": "+14155550100",
                                                  "termination_uri": f"sip:127.0.0.1:{free_port()};transport=tcp",
                                                  "outbound_agents": [{"agent_id": agent["agent_id"], "weight": 1}]})
        received, firsts, lasts = live(api, port, args.calls)
        print(f"live: {args.calls} calls, {received}/{3 * args.calls} events received")
        print(f"  call end -> call_failed arrives  (first event): p50 {percentile(firsts, 0.5):.1f} ms, p99 {percentile(firsts, 0.99):.1f} ms")
        print(f"  call end -> call_analyzed arrives (third event): p50 {percentile(lasts, 0.5):.1f} ms, p99 {percentile(lasts, 0.99):.1f} ms")
        done, drained, elapsed, spread = backlog(api, port, args.calls)
        rate = drained / spread if spread > 0 else float("nan")
        print(f"backlog: {drained}/{3 * args.calls} events drained {elapsed:.2f} s after the receiver came up"
              f" (includes waiting out retry timers of up to 100 ms){'' if done else ' (INCOMPLETE)'}")
        print(f"  first to last arrival {spread:.2f} s: {rate:.0f} events/s")
    finally:
        stop(server)
    bodies = [json.dumps({"event": "call_ended", "call": {"call_id": f"call_{i:032x}", "padding": "x" * 1500}})
              for i in range(3 * args.calls)]
    peer_elapsed = peer(port, bodies)
    peer_rate = len(bodies) / peer_elapsed
    print(f"peer (plain Python sender, {IN_FLIGHT} threads, same receiver): {len(bodies)} events in {peer_elapsed:.2f} s"
          f" ({peer_rate:.0f} events/s)")
    print(f"ratio uponai backlog drain / peer: {rate / peer_rate:.2f}")
    shutil.rmtree(work, ignore_errors=True)
    if args.smoke and (received < 3 * args.calls or not done):
        sys.exit(f"smoke run failed: {received}/{3 * args.calls} live events, backlog drained: {done}")


if __name__ == "__main__":
    main()
