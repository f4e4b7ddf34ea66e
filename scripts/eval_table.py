"""Turns `edgeinf eval --json` files into Markdown tables: quality per task and length (one
column per policy), then time to first token (median over tasks) and peak memory per length."""
import json
import statistics
import sys
from collections import defaultdict


def main(paths):
    runs, meta = [], None
    for p in paths:
        with open(p) as f:
            d = json.load(f)
        meta = meta or d
        runs += d["runs"]
    policies = []
    for r in runs:
        if r["policy"] not in policies:
            policies.append(r["policy"])
    quality = defaultdict(list)
    cost = defaultdict(list)
    for r in runs:
        key = (r["task"], r["length"])
        if r["score"] is not None and not r["error"]:
            quality[key, r["policy"]].append(r["score"])
            cost[r["length"], r["policy"]].append((r["ttft_s"], r["peak_rss_mb"]))
    print(f"S={meta['sink']} W={meta['window']} L={meta['segment']}, budget {meta['budget']}, "
          f"update {meta.get('update', '?')}, gate {meta['gate']}\n")
    print("| task | tokens | " + " | ".join(policies) + " |")
    print("|---|---:|" + "---:|" * len(policies))
    for task, length in sorted({(t, n) for (t, n), _ in quality}, key=lambda k: (k[0], k[1])):
        cells = []
        for p in policies:
            v = quality.get(((task, length), p))
            if not v:
                cells.append("not run")
            elif task == "ppl":
                cells.append(f"{sum(v) / len(v):.2f}")
            else:
                cells.append(f"{100 * sum(v) / len(v):.0f} %")
        print(f"| {task} | {length} | " + " | ".join(cells) + " |")
    print("\n| tokens | " + " | ".join(f"{p} TTFT s / peak MiB" for p in policies) + " |")
    print("|---:|" + "---:|" * len(policies))
    for length in sorted({n for n, _ in cost}):
        cells = []
        for p in policies:
            v = cost.get((length, p))
            cells.append(f"{statistics.median(t for t, _ in v):.0f} / {max(m for _, m in v):.0f}" if v else "not run")
        print(f"| {length} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
