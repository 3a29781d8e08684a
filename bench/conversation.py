#!/usr/bin/env python3
"""Voice-agent benchmark: offline engines (Silero, Whisper tiny.en, Piper), real SIP and RTP on
loopback, every call through the simulation API (a persona with its own voice and ears).
Prints figures; asserts nothing.

1. Turns, one call at a time: a flow agent asks, the persona answers from a phrase set, the
   agent acknowledges and asks again. Per answered turn, from Get Call's `latency`: e2e (the
   persona's last speech frame to the agent's first RTP packet), asr, llm (the engine), tts
   (first audio); "wait + overhead" is e2e minus those three (the end-of-turn silence, the
   platform, and whatever asr did not overlap with the silence). Also e2e at the persona's own
   side of the wire (`agent_answered_after_ms`: its last voice packet to the agent's first
   voice packet it heard). STT word error rate: the agent's transcript of each phrase against
   the phrase.
2. Barge-in: the persona speaks 1.5 s into a long answer; from its report, its speech onset
   to the end of the agent audio it heard (the cut), p50.
3. Concurrency: K simulations at once for growing K, e2e p50 at each K; the largest K whose
   p50 stays <= 1.5 s.
4. Platform overhead: the turns of 1. on a second server started with `--instant-speech`
   (the agent's VAD, STT and TTS are instant stand-ins: loudness, a word count, a tone), so
   e2e minus the end-of-turn silence is what the platform adds: media, agent task, flow
   engine, channels. The persona keeps its offline voice and ears.

Usage: bench/conversation.py [--calls 5] [--levels 1,2,4,6,8,10,12] [--smoke]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, percentile, smoke_args, start_server, stop  # noqa: E402

PHRASES = [
    "I would like to move my appointment to Thursday morning.",
    "My daughter needs a cleaning before the end of the month.",
    "Can you remind me what time the office opens on Saturday?",
    "I think my insurance changed last week.",
    "Please send the confirmation to my email address.",
    "I have a small pain in my lower left tooth.",
    "Is there parking near the building?",
    "We will be away for two weeks in July.",
    "Could the doctor call me back this afternoon?",
    "I prefer the earliest slot you have.",
]
LONG = ("Our office is open from eight in the morning until six in the evening on weekdays, and from "
        "nine until one on Saturdays, and we are closed on Sundays and on public holidays, and parking "
        "is free behind the building.")
PIPER = "piper-en_US-joe-medium"
# The end-of-turn silence at `responsiveness` 1, the default (agent::turn::TurnConfig).
END_OF_TURN_MS = 450


def build_release():
    """The release server and its Whisper worker, on the assets `scripts/assets` installs."""
    if os.environ.get("UPONAI_BIN"):
        return
    subprocess.run([os.path.join(ROOT, "scripts", "assets")], check=True)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    assets = os.environ.get("UPONAI_ASSETS_DIR") or os.path.join(cache, "uponai", "assets")
    env = dict(os.environ, CMAKE_LIBRARY_PATH=os.path.join(assets, "ct2-link"))
    print("building uponai and uponai-whisper (release)...", flush=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "uponai", "-p", "uponai-whisper"], cwd=ROOT, env=env, check=True)


def skip(edge_id, to):
    return {"id": edge_id, "transition_condition": {"type": "prompt", "prompt": "Skip response"}, "destination_node_id": to}


def keyword(edge_id, words, to):
    prompt = "User mentions " + " or ".join(f'"{w}"' for w in words)
    return {"id": edge_id, "transition_condition": {"type": "prompt", "prompt": prompt}, "destination_node_id": to}


def listening_flow():
    """Asks, acknowledges anything, asks again; "goodbye" ends the call."""
    def ask(node_id, text):
        return {"id": node_id, "type": "conversation", "instruction": {"type": "static_text", "text": text},
                "edges": [keyword(f"{node_id}-bye", ["goodbye"], "bye")],
                "else_edge": {"id": f"{node_id}-else", "transition_condition": {"type": "prompt", "prompt": "Else"},
                              "destination_node_id": "more"}}
    return {"start_speaker": "agent", "start_node_id": "ask", "nodes": [
        ask("ask", "Hello, this is the dental office. How can I help?"),
        ask("more", "Noted. Anything else?"),
        {"id": "bye", "type": "end", "instruction": {"type": "static_text", "text": "Goodbye."}},
    ]}


def barge_flow():
    return {"start_speaker": "agent", "start_node_id": "hours", "nodes": [
        {"id": "hours", "type": "conversation", "instruction": {"type": "static_text", "text": LONG},
         "edges": [keyword("stop", ["stop", "wait"], "sorry")]},
        {"id": "sorry", "type": "conversation", "instruction": {"type": "static_text", "text": "Sorry."},
         "skip_response_edge": skip("s", "bye")},
        {"id": "bye", "type": "end", "instruction": {"type": "static_text", "text": "Goodbye."}},
    ]}


def make_agent(api, flow):
    flow_id = api.call("POST", "/create-conversation-flow", flow)["conversation_flow_id"]
    engine = {"type": "conversation-flow", "conversation_flow_id": flow_id}
    return api.call("POST", "/create-agent", {"voice_id": PIPER, "response_engine": engine})["agent_id"]


def simulate(api, agent_id, persona):
    """Runs one simulation to its end; returns (Get Call, the persona's report)."""
    body = {"agent_id": agent_id, "persona": persona}
    delay = 0.1
    for attempt in range(100):
        try:
            call_id = api.call("POST", "/uponai/create-simulation", body)["call_id"]
            break
        except urllib.error.HTTPError as err:
            # A simulation is admitted like any call: retry a 429 after its retry-after-ms.
            if err.code != 429 or attempt == 99:
                raise
            hinted = err.headers.get("retry-after-ms")
            time.sleep(float(hinted) / 1000 if hinted else delay)
            delay = min(delay * 2, 2.0)
    deadline = time.time() + 600
    while True:
        simulation = api.call("GET", f"/uponai/get-simulation/{call_id}")
        if simulation["status"] == "ended":
            break
        if simulation["status"] == "failed" or time.time() > deadline:
            raise RuntimeError(f"simulation {call_id}: {simulation}")
        time.sleep(0.25)
    while True:
        call = api.call("GET", f"/v2/get-call/{call_id}")
        if call["call_status"] in ("ended", "not_connected", "error") or time.time() > deadline:
            return call, simulation["report"]
        time.sleep(0.1)


def answering_persona(phrases):
    lines = [{"say": p} for p in phrases] + [{"say": "Goodbye."}]
    return {"name": "bench", "lines": lines, "hang_up_after_ms": 8000}


def words(text):
    return [w for w in re.sub(r"[^a-z0-9' ]", " ", text.lower()).split() if w]


def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def values(call, name):
    return (call.get("latency") or {}).get(name, {}).get("values") or []


def turns(api, n_calls, phrases_per_call):
    agent_id = make_agent(api, listening_flow())
    e2e, asr, llm, tts, rest, wire = [], [], [], [], [], []
    errors = reference_words = stuck = 0
    for k in range(n_calls):
        phrases = [PHRASES[(k * phrases_per_call + i) % len(PHRASES)] for i in range(phrases_per_call)]
        call, report = simulate(api, agent_id, answering_persona(phrases))
        lat = {name: values(call, name) for name in ("e2e", "asr", "llm", "tts")}
        stuck += call.get("stuck_turns") or 0
        e2e += lat["e2e"]
        asr += lat["asr"]
        llm += lat["llm"]
        tts += lat["tts"]
        # llm and tts count the greeting too, asr and e2e only answered turns: the last n
        # values of each are the n answers'.
        n = min(len(lat[name]) for name in lat)
        for i in range(1, n + 1):
            rest.append(lat["e2e"][-i] - lat["asr"][-i] - lat["llm"][-i] - lat["tts"][-i])
        wire += [s["agent_answered_after_ms"] for s in report["said"] if s.get("agent_answered_after_ms") is not None]
        heard = [u["content"] for u in call.get("transcript_object") or [] if u["role"] == "user"]
        for phrase, text in zip(phrases, heard):
            errors += edit_distance(words(phrase), words(text))
            reference_words += len(words(phrase))
        print(f"  call {k + 1}/{n_calls}: {call['disconnection_reason']}, e2e {lat['e2e']}", flush=True)
    print(f"\nturns: {len(e2e)} answered turns in {n_calls} calls (one call at a time), {stuck} stuck turns")
    print("                      p50     p90     max   (ms)")
    for name, series in (("e2e", e2e), ("asr", asr), ("llm (engine)", llm), ("tts first audio", tts),
                         ("wait + overhead", rest), ("e2e at the persona", wire)):
        print(f"  {name:<18} {percentile(series, 0.5):>6.0f}  {percentile(series, 0.9):>6.0f}  "
              f"{max(series) if series else float('nan'):>6.0f}")
    if reference_words:
        print(f"  STT word error rate: {100 * errors / reference_words:.1f} % ({errors} errors in {reference_words} words)")
    return percentile(e2e, 0.5)


def barge_in(api, n_calls):
    agent_id = make_agent(api, barge_flow())
    persona = {"name": "interrupter", "lines": [{"say": "Wait, please stop.", "when": {"type": "over_agent", "after_ms": 1500}}],
               "hang_up_after_ms": 8000}
    cuts = []
    for _ in range(n_calls):
        _, report = simulate(api, agent_id, persona)
        said = report["said"][0] if report["said"] else None
        cut = next((h for h in report["heard"] if said and h["start"] < said["start"] < h["end"]), None)
        if cut:
            cuts.append((cut["end"] - said["start"]) * 1000)
    print(f"\nbarge-in: persona's speech onset -> agent audio stops at the wire, {len(cuts)} calls: "
          f"p50 {percentile(cuts, 0.5):.0f} ms, max {max(cuts) if cuts else float('nan'):.0f} ms")


def concurrency(api, levels, phrases_per_call):
    agent_id = make_agent(api, listening_flow())
    print("\nconcurrency: K simulations at once, e2e over all their turns")
    print("   K    e2e p50   e2e p90   turns   stuck")
    best = 0
    for level in levels:
        results = [None] * level

        def one(i):
            phrases = [PHRASES[(i + j) % len(PHRASES)] for j in range(phrases_per_call)]
            try:
                results[i] = simulate(api, agent_id, answering_persona(phrases))[0]
            except Exception as err:  # noqa: BLE001 - reported, not raised: the curve goes on
                print(f"  simulation failed: {err}")
        threads = [threading.Thread(target=one, args=(i,)) for i in range(level)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        e2e = [v for call in results if call for v in values(call, "e2e")]
        p50 = percentile(e2e, 0.5)
        stuck = sum(call.get("stuck_turns") or 0 for call in results if call)
        print(f"  {level:>2}   {p50:>7.0f}   {percentile(e2e, 0.9):>7.0f}   {len(e2e):>5}   {stuck:>5}", flush=True)
        if e2e and p50 <= 1500:
            best = level
    print(f"  held at once with e2e p50 <= 1.5 s: {best}")


def overhead(api, n_calls, phrases_per_call):
    """Turns against instant stand-in engines: e2e beyond the end-of-turn silence. Only the
    agent's own figure: its loudness VAD ends a turn by another rule than the persona's ear,
    so the persona's side would measure the two rules' difference, not the platform."""
    agent_id = make_agent(api, listening_flow())
    beyond = []
    for k in range(n_calls):
        phrases = [PHRASES[(k * phrases_per_call + i) % len(PHRASES)] for i in range(phrases_per_call)]
        call, _ = simulate(api, agent_id, answering_persona(phrases))
        beyond += [v - END_OF_TURN_MS for v in values(call, "e2e")]
    print(f"\nplatform overhead (instant stand-in engines), {len(beyond)} turns in {n_calls} calls:")
    print(f"  e2e - end-of-turn silence: p50 {percentile(beyond, 0.5):.0f} ms, p90 {percentile(beyond, 0.9):.0f} ms, "
          f"p99 {percentile(beyond, 0.99):.0f} ms, max {max(beyond) if beyond else float('nan'):.0f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5, help="calls for the turn and barge-in figures")
    parser.add_argument("--levels", default="1,2,4,6,8,10,12", help="concurrency levels, comma-separated")
    smoke_args(parser)
    args = parser.parse_args()
    calls, phrases, levels = args.calls, 4, [int(x) for x in args.levels.split(",") if x]
    if args.smoke:
        calls, phrases, levels = 1, 1, [2]
    build_release()
    workdir = tempfile.mkdtemp(prefix="uponai-bench-conversation-")
    server, api = start_server(workdir, ["--no-audio-timeout-secs", "60"])
    try:
        turns(api, calls, phrases)
        barge_in(api, calls)
        concurrency(api, levels, 2 if args.smoke else 3)
    finally:
        stop(server)
        shutil.rmtree(workdir, ignore_errors=True)
    workdir = tempfile.mkdtemp(prefix="uponai-bench-overhead-")
    server, api = start_server(workdir, ["--no-audio-timeout-secs", "60", "--instant-speech"])
    try:
        overhead(api, calls * 2, 1 if args.smoke else 5)
    finally:
        stop(server)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
