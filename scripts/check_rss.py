"""Peak resident memory of `edgeinf generate` on a long input, against model + state + a margin.

Builds a prompt of --tokens tokens (about; whitespace-split words of the held-out KJV text,
repeated), runs `edgeinf generate --policy POLICY -f PROMPT -n 8`, reads the child's peak RSS
from wait4, and the state and weight sizes from the tool's closing line. Exits 1 when
peak > weights + state + margin.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default="build/engine/edgeinf")
    ap.add_argument("-m", "--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--text", default="data/kjv-nt.txt")
    ap.add_argument("--tokens", type=int, default=131072)
    ap.add_argument("--policy", default="edgeinfinite")
    ap.add_argument("--margin-mib", type=float, default=160.0,
                    help="allowance for the tokenizer, prompt buffers, code and allocator slack")
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()

    words = open(a.text, encoding="utf-8").read().split()
    # SmolLM2's tokenizer gives about 1.24 tokens per whitespace-separated KJV word.
    n_words = int(a.tokens / 1.24)
    prompt = " ".join(words[i % len(words)] for i in range(n_words))
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(prompt)
        path = f.name
    cmd = [a.binary, "generate", "-m", a.model, "--policy", a.policy, "-f", path, "-n", "8", "--temp", "0",
           "--no-progress", "-t", str(a.threads)]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    os.unlink(path)
    if proc.returncode != 0:
        print(err, file=sys.stderr)
        return 2
    m = re.search(r"prefill: (\d+) tokens in ([\d.]+) s.*state ([\d.]+) MiB, weights ([\d.]+) MiB", err)
    if not m:
        print("no summary line in:\n" + err, file=sys.stderr)
        return 2
    n_tok, prefill_s, state, weights = int(m[1]), float(m[2]), float(m[3]), float(m[4])
    peak = resource_peak_mib(proc)
    bound = weights + state + a.margin_mib
    print(f"{a.policy}: {n_tok} prompt tokens, prefill {prefill_s:.1f} s ({n_tok / prefill_s:.0f} tok/s), "
          f"wall {time.time() - t0:.1f} s")
    print(f"peak RSS {peak:.1f} MiB; weights {weights:.1f} + state {state:.1f} + margin {a.margin_mib:.0f} "
          f"= {bound:.1f} MiB -> {'OK' if peak <= bound else 'OVER'}")
    return 0 if peak <= bound else 1


def resource_peak_mib(proc):
    import resource
    # The only child waited for so far is the generate process.
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


if __name__ == "__main__":
    sys.exit(main())
