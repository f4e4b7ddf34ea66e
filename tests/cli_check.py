#!/usr/bin/env python3
"""Runs a command-line test and checks its exit status as well as its output (CTest's
PASS_REGULAR_EXPRESSION alone ignores the exit status, so a refusal test would pass on success).

  cli_check.py [--rc N] [--expect REGEX]... [--reject REGEX]... [--eval-json FILE]
               [--calibrated] -- COMMAND ARGS...

--rc N          the exit status the command must end with (default 0)
--expect REGEX  must match the combined output (Python re, DOTALL)
--reject REGEX  must not match it
--eval-json F   `edgeinf eval` results: every perplexity finite and in [10, 300], and full
                attention finds the passkey and the needle (inside its context)
--calibrated    `edgeinf calibrate`: both gate stages beat the closed gate (relative loss < 1)
"""
import argparse
import json
import math
import re
import subprocess
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rc", type=int, default=0)
    ap.add_argument("--expect", action="append", default=[])
    ap.add_argument("--reject", action="append", default=[])
    ap.add_argument("--eval-json")
    ap.add_argument("--sections", type=int, default=8, help="coverage sections per document in --eval-json")
    ap.add_argument("--calibrated", action="store_true")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command and a.command[0] == "--" else a.command
    if not cmd:
        ap.error("no command")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    out = p.stdout
    sys.stdout.write(out)
    failures = []
    if p.returncode != a.rc:
        failures.append(f"exit status {p.returncode}, expected {a.rc}")
    for rx in a.expect:
        if not re.search(rx, out, re.DOTALL):
            failures.append(f"output does not match {rx!r}")
    for rx in a.reject:
        if re.search(rx, out, re.DOTALL):
            failures.append(f"output matches {rx!r}")
    if a.eval_json:
        runs = json.load(open(a.eval_json))["runs"]
        for r in runs:
            if r["task"] == "ppl" and not (math.isfinite(r["score"]) and 10 <= r["score"] <= 300):
                failures.append(f"perplexity of {r['policy']} at {r['length']} is {r['score']}")
            if r["error"]:
                failures.append(f"{r['task']} {r['policy']}: {r['error']}")
        for task in {"passkey", "needle"} & {r["task"] for r in runs}:
            full = [r["score"] for r in runs if r["task"] == task and r["policy"] == "full"]
            if not full or any(s != 1.0 for s in full):
                failures.append(f"full attention's {task} scores are {full}, expected all 1.0")
        # docqa holds several facts of one kind at once, which a 135M model with everything in view
        # still mixes up at times: full must answer one of them at least.
        full = [r["score"] for r in runs if r["task"] == "docqa" and r["policy"] == "full"]
        if full and max(full) != 1.0:
            failures.append(f"full attention's docqa scores are {full}, expected one 1.0 at least")
        # docqa: one answer per depth for every policy, each scored 0 or 1 and non-empty.
        depths = sorted({r["depth"] for r in runs if r["task"] == "needle"})
        for policy in sorted({r["policy"] for r in runs if r["task"] == "docqa"}):
            got = sorted(r["depth"] for r in runs if r["task"] == "docqa" and r["policy"] == policy)
            if got != depths:
                failures.append(f"docqa {policy} answered at depths {got}, expected {depths}")
        for r in runs:
            if r["task"] == "docqa" and (r["score"] not in (0, 1) or not r["answer"].strip()):
                failures.append(f"docqa {r['policy']} at {r['depth']}: score {r['score']}, answer {r['answer']!r}")
        # docqa-loss: one finite positive loss per depth for every policy; where the fact lies beyond
        # the window (the smallest depth), full attention, which sees it, predicts it better than
        # streaming, which cannot.
        for policy in sorted({r["policy"] for r in runs if r["task"] == "docqa-loss"}):
            items = [r for r in runs if r["task"] == "docqa-loss" and r["policy"] == policy]
            if sorted(r["depth"] for r in items) != depths:
                failures.append(f"docqa-loss {policy} scored depths {[r['depth'] for r in items]}, expected {depths}")
            for r in items:
                if not (math.isfinite(r["score"]) and r["score"] > 0):
                    failures.append(f"docqa-loss {policy} at {r['depth']}: loss {r['score']}")
        loss = {r["policy"]: r["score"] for r in runs
                if r["task"] == "docqa-loss" and depths and r["depth"] == depths[0]}
        if "full" in loss and "streaming" in loss and not loss["full"] < loss["streaming"]:
            failures.append(f"docqa-loss at depth {depths[0]}: full {loss['full']} "
                            f"is not below streaming {loss['streaming']}")
        # coverage: one item per section, in document order inside (0, 1), each with its key terms
        # and a score that says whether the summary names one of them.
        for policy in sorted({r["policy"] for r in runs if r["task"] == "coverage"}):
            items = [r for r in runs if r["task"] == "coverage" and r["policy"] == policy]
            depths = [r["depth"] for r in items]
            if len(items) != a.sections or depths != sorted(depths) or not all(0 < d < 1 for d in depths):
                failures.append(f"coverage {policy}: sections at {depths}, expected {a.sections} in order")
            for r in items:
                m = re.match(r"\[([A-Z][a-z]{3,}(?:, [A-Z][a-z]{3,}){0,2})\] (.*)", r["answer"], re.DOTALL)
                if not m:
                    failures.append(f"coverage {policy}: no key terms in {r['answer'][:80]!r}")
                    continue
                named = any(re.search(rf"(?<![A-Za-z]){t}(?![A-Za-z])", m.group(2)) for t in m.group(1).split(", "))
                if r["score"] != float(named):
                    failures.append(f"coverage {policy}: score {r['score']} but named={named} for {m.group(1)}")
    if a.calibrated:
        m = re.search(r"mean relative validation loss: scalar ([0-9.]+), linear ([0-9.]+)", out)
        if not m:
            failures.append("no validation loss line")
        elif not (float(m.group(1)) < 1.0 and float(m.group(2)) < 1.0):
            failures.append(f"the gate does not beat a closed one: {m.group(0)}")
    for f in failures:
        print(f"cli_check: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
