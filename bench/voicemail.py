#!/usr/bin/env python3
"""Answering-machine detection benchmark: an agent with `voicemail_option: hangup` calls the
simulator's personas, half of them people (a short greeting, then waiting for the agent) and
half machines (a recorded greeting, with or without a beep), real SIP and RTP on loopback,
offline speech. From each call's `machine_detection` (uponai's field: `result`,
`decided_after_ms`): accuracy per kind, and the time to decision. Prints figures; asserts
nothing.

Usage: bench/voicemail.py [--parallel 3] [--smoke]
"""

import argparse
import os
import shutil
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import percentile, smoke_args, start_server, stop  # noqa: E402
from conversation import PIPER, build_release, simulate  # noqa: E402

PEOPLE = [
    "Hello?",
    "Hi, this is Sam.",
    "Yes?",
    "Hello, who is calling?",
    "Acme dental, Maria speaking.",
    "Hey. What's up?",
]
MACHINES = [
    ("Hi, you have reached Sam. I can't take your call right now. Please leave a message after the tone.", 500),
    ("The person you are calling is not available. Please leave your message after the beep.", 400),
    ("Thank you for calling Acme dental. Our office is closed. Please leave your name and number and we will call you back.", 0),
    ("Hey, it's Maria, leave me a message and I'll get back to you as soon as I can.", 700),
    ("You have reached the voicemail of extension two four one. At the tone, please record your message.", 300),
    ("Hello. We are away from the phone at the moment, so please leave a short message, thank you.", 0),
]


def persona(kind, index):
    if kind == "human":
        return {"name": f"person-{index}", "lines": [{"say": PEOPLE[index]}], "hang_up_after_ms": 4000}
    text, beep = MACHINES[index]
    line = {"say": text, "when": {"type": "at", "ms": 300}}
    if beep:
        line["beep_ms"] = beep
    return {"name": f"machine-{index}", "lines": [line], "hang_up_after_ms": 4000}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parallel", type=int, default=3, help="simulations at once")
    smoke_args(parser)
    args = parser.parse_args()
    cases = [("human", i) for i in range(len(PEOPLE))] + [("machine", i) for i in range(len(MACHINES))]
    if args.smoke:
        cases = [("human", 0), ("machine", 0)]
    build_release()
    workdir = tempfile.mkdtemp(prefix="uponai-bench-voicemail-")
    server, api = start_server(workdir, ["--no-audio-timeout-secs", "60"])
    try:
        llm = api.call("POST", "/create-retell-llm", {"begin_message": "Hello, this is Joe from the dental office."})["llm_id"]
        agent_id = api.call("POST", "/create-agent", {
            "voice_id": PIPER, "response_engine": {"type": "retell-llm", "llm_id": llm},
            "voicemail_option": {"action": {"type": "hangup"}},
        })["agent_id"]
        results = {}
        gate = threading.Semaphore(args.parallel)

        def one(case):
            with gate:
                call, _ = simulate(api, agent_id, persona(*case))
                results[case] = call.get("machine_detection") or {}
        threads = [threading.Thread(target=one, args=(case,)) for case in cases]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stop(server)
        shutil.rmtree(workdir, ignore_errors=True)
    print("\nanswering-machine detection:")
    for kind in ("human", "machine"):
        mine = [(case, results.get(case, {})) for case in cases if case[0] == kind]
        right = sum(1 for _, r in mine if r.get("result") == kind)
        times = [r["decided_after_ms"] for _, r in mine if r.get("result") == kind and "decided_after_ms" in r]
        wrong = [f"{kind}-{i}: {r.get('result', 'undecided')}" for (_, i), r in mine if r.get("result") != kind]
        print(f"  {kind:<8} {right}/{len(mine)} right; time to decision p50 {percentile(times, 0.5):.0f} ms, "
              f"max {max(times) if times else float('nan'):.0f} ms" + (f"; wrong: {', '.join(wrong)}" if wrong else ""))
    total = sum(1 for case in cases if results.get(case, {}).get("result") == case[0])
    print(f"  accuracy {total}/{len(cases)} = {100 * total / len(cases):.0f} %")


if __name__ == "__main__":
    main()
