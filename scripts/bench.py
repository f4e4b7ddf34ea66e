"""Runs `edgeinf bench` and the same measurements with llama-cpp-python, then prints ratios.

Both sides use the token stream 100 + (i * 2654435761) mod (n_vocab - 100), the same thread
count, prefill from an empty context, and decode after `depth` tokens; each figure is the median
of --reps runs.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def bench_tokens(offset, n, n_vocab):
    return [100 + ((offset + i) * 2654435761) % (n_vocab - 100) for i in range(n)]


def run_llama_cpp(model, threads, prefill, depth, n_decode, reps, n_batch):
    from llama_cpp import Llama

    n_ctx = max(max(prefill), depth + n_decode) + 16
    llm = Llama(model_path=model, n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch, n_threads=threads,
                n_threads_batch=threads, logits_all=False, verbose=False)
    n_vocab = llm.n_vocab()
    results = []
    for n in prefill:
        toks = bench_tokens(0, n, n_vocab)
        times = []
        for _ in range(reps):
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(toks)
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        results.append({"test": "prefill", "tokens": n, "seconds": t, "tok_per_s": n / t})
    ctx_toks = bench_tokens(0, depth, n_vocab)
    dec_toks = bench_tokens(depth, n_decode, n_vocab)
    times = []
    for _ in range(reps):
        llm.reset()
        if depth:
            llm.eval(ctx_toks)
        t0 = time.perf_counter()
        for tok in dec_toks:
            llm.eval([tok])
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    results.append({"test": "decode", "tokens": n_decode, "depth": depth, "seconds": t, "tok_per_s": n_decode / t})
    return results


def run_edgeinf(binary, model, threads, prefill, depth, n_decode, reps, n_batch, device, kv_type):
    cmd = [binary, "bench", "-m", model, "-t", str(threads), "--prefill", ",".join(map(str, prefill)),
           "--depth", str(depth), "--decode", str(n_decode), "--reps", str(reps), "-b", str(n_batch),
           "--device", device, "--kv-type", kv_type]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("JSON "):
            return json.loads(line[5:])["results"]
    raise RuntimeError("edgeinf bench printed no JSON line:\n" + out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prefill", default="512,2048")
    ap.add_argument("--depth", type=int, default=512)
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--binary", default="build/engine/edgeinf")
    ap.add_argument("--device", default="cpu",
                    help="edgeinf's device (cpu, cuda, auto); llama-cpp-python from PyPI always runs on the CPU")
    ap.add_argument("--kv-type", default="f32",
                    help="how edgeinf's full KV cache stores its entries (f32, f16, q8); llama.cpp's is f16")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    prefill = [int(x) for x in a.prefill.split(",") if x]

    ours = run_edgeinf(a.binary, a.model, a.threads, prefill, a.depth, a.decode, a.reps, a.batch_size, a.device,
                       a.kv_type)
    peer = run_llama_cpp(a.model, a.threads, prefill, a.depth, a.decode, a.reps, a.batch_size)

    print(f"model {a.model}, {a.threads} threads, median of {a.reps} runs; edgeinf on {a.device}, llama.cpp on cpu")
    print(f"{'test':<18}{'edgeinf tok/s':>15}{'llama.cpp tok/s':>17}{'ratio':>9}")
    rows = []
    for o, p in zip(ours, peer):
        name = f"prefill {o['tokens']}" if o["test"] == "prefill" else f"decode {o['tokens']} @ {o['depth']}"
        ratio = o["tok_per_s"] / p["tok_per_s"]
        rows.append({"test": name, "edgeinf": o["tok_per_s"], "llama_cpp": p["tok_per_s"], "ratio": ratio})
        print(f"{name:<18}{o['tok_per_s']:>15.1f}{p['tok_per_s']:>17.1f}{ratio:>8.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"threads": a.threads, "model": a.model, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
