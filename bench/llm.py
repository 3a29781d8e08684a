#!/usr/bin/env python3
"""LLM-path benchmark: `retell-llm` agents on a local OpenAI-compatible server (streamed
server-sent events, as OpenAI and vLLM send them), real SIP and RTP on loopback, every call a
simulation (the persona speaks with Piper and hears with Whisper).

The model server answers every turn with "Noted, thank you. Anything else?" (and "Goodbye."
plus an end_call tool call when the caller says goodbye), streamed one word per event, after a
time to first token (TTFT) of 0 ms or 300 ms.

For each TTFT, per answered turn, from Get Call's `latency`: e2e (the caller's last speech to
the agent's first RTP packet), asr, llm (request to the first text: TTFT plus the platform's
HTTP), tts (first audio); the goal is e2e p50 <= end-of-turn silence (450 ms) + asr p50 +
TTFT + tts p50 + 20 ms. Then the same turns on a server with instant stand-in speech engines
(`--instant-speech`): e2e minus the end-of-turn silence minus TTFT is the LLM path's own
overhead (HTTP, streaming, sentence splitting, media).

Usage: bench/llm.py [--calls 4] [--smoke]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import percentile, smoke_args, start_server, stop  # noqa: E402
from conversation import END_OF_TURN_MS, PHRASES, PIPER, build_release, simulate, values  # noqa: E402

ANSWER = "Noted, thank you. Anything else?"


class ModelServer(BaseHTTPRequestHandler):
    """POST /v1/chat/completions, streamed; the model name is the TTFT: "ttft-300"."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        ttft = int(str(request.get("model", "ttft-0")).rsplit("-", 1)[-1] or 0) / 1000
        last_user = next((m.get("content") or "" for m in reversed(request.get("messages", [])) if m.get("role") == "user"), "")
        bye = "goodbye" in last_user.lower() or "bye" in last_user.lower().split()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

        def send(payload):
            data = f"data: {payload}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def delta(value):
            send(json.dumps({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": value}]}))

        time.sleep(ttft)
        delta({"role": "assistant"})
        for token in ("Goodbye." if bye else ANSWER).split(" "):
            delta({"content": token + " "})
        if bye:
            delta({"tool_calls": [{"index": 0, "id": "call_bye", "type": "function",
                                   "function": {"name": "end_call", "arguments": "{}"}}]})
        send("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def start_model_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ModelServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def make_agent(api, ttft_ms):
    llm = api.call("POST", "/create-retell-llm", {
        "general_prompt": "You take messages for the dental office.",
        "begin_message": "Hello, this is the dental office. How can I help?",
        "model": f"ttft-{ttft_ms}",
        "general_tools": [{"type": "end_call", "name": "end_call", "description": "Hang up when the caller says goodbye"}],
    })["llm_id"]
    engine = {"type": "retell-llm", "llm_id": llm}
    return api.call("POST", "/create-agent", {"voice_id": PIPER, "response_engine": engine})["agent_id"]


def persona(phrases):
    return {"name": "bench", "lines": [{"say": p} for p in phrases] + [{"say": "Goodbye."}], "hang_up_after_ms": 8000}


def run_turns(api, ttft_ms, n_calls, phrases_per_call):
    agent_id = make_agent(api, ttft_ms)
    series = {name: [] for name in ("e2e", "asr", "llm", "tts")}
    reasons = []
    for k in range(n_calls):
        phrases = [PHRASES[(k * phrases_per_call + i) % len(PHRASES)] for i in range(phrases_per_call)]
        call, _ = simulate(api, agent_id, persona(phrases))
        reasons.append(call["disconnection_reason"])
        lat = {name: values(call, name) for name in series}
        # llm and tts also count the greeting; e2e and asr only answered turns.
        n = len(lat["e2e"])
        for name in series:
            series[name] += lat[name][-n:] if n else []
    return series, reasons


def report(title, series, ttft_ms, reasons, goal):
    e2e = series["e2e"]
    print(f"\n{title}: {len(e2e)} answered turns; calls ended {sorted(set(reasons))}")
    print("                 p50     p90     p99   (ms)")
    for name in ("e2e", "asr", "llm", "tts"):
        s = series[name]
        print(f"  {name:<12} {percentile(s, 0.5):>6.0f}  {percentile(s, 0.9):>6.0f}  {percentile(s, 0.99):>6.0f}")
    if goal:
        bound = END_OF_TURN_MS + percentile(series["asr"], 0.5) + ttft_ms + percentile(series["tts"], 0.5) + 20
        verdict = "met" if percentile(e2e, 0.5) <= bound else "NOT met"
        print(f"  goal e2e p50 <= {END_OF_TURN_MS} + asr p50 + {ttft_ms} + tts p50 + 20 = {bound:.0f} ms: {verdict}")
    else:
        beyond = [v - END_OF_TURN_MS - ttft_ms for v in e2e]
        print(f"  LLM-path overhead (e2e - {END_OF_TURN_MS} - TTFT): p50 {percentile(beyond, 0.5):.0f} ms, "
              f"p99 {percentile(beyond, 0.99):.0f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4, help="calls per TTFT")
    smoke_args(parser)
    args = parser.parse_args()
    calls, phrases = (1, 1) if args.smoke else (args.calls, 4)
    ttfts = [0] if args.smoke else [0, 300]
    build_release()
    model, model_url = start_model_server()
    try:
        for instant in (False, True):
            workdir = tempfile.mkdtemp(prefix="uponai-bench-llm-")
            extra = ["--no-audio-timeout-secs", "60", "--llm-base-url", model_url] + (["--instant-speech"] if instant else [])
            server, api = start_server(workdir, extra)
            try:
                for ttft in ttfts:
                    series, reasons = run_turns(api, ttft, calls, phrases)
                    engines = "instant stand-in speech" if instant else "offline speech"
                    report(f"TTFT {ttft} ms, {engines}", series, ttft, reasons, goal=not instant)
            finally:
                stop(server)
                shutil.rmtree(workdir, ignore_errors=True)
    finally:
        model.shutdown()


if __name__ == "__main__":
    main()
