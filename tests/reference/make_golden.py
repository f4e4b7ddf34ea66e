#!/usr/bin/env python3
"""Writes golden reference files (.ref) for the C++ tests using llama_ref.py.

Usage:
  python make_golden.py --model M.gguf --out-dir D            # real model prompts
  python make_golden.py --model M.gguf --out-dir D --tiny     # ... plus tiny random models
  python make_golden.py --out-dir D --tiny                    # tiny random models only

Real model: five short prompts (three in ChatML format) with a 32-token greedy
continuation, one ~1K-token and one >4K-token prompt cut from
/usr/share/common-licenses/GPL-3 (no continuation).  Text is tokenised with
tokenizer_ref.load(gguf).encode(text) (an error when it cannot be loaded).  ChatML special
tokens are inserted as ids looked up in the GGUF token list; the text between them
is encoded piecewise (equivalent to encoding the whole string with special-token
splitting).

--tiny: writes the random-weight GGUFs of make_tiny_gguf.py into D
(tiny_<variant>.gguf) and tiny_<variant>.ref for each (random ids, 40-70 tokens,
all logit rows, 8 generated tokens).

.ref format (little endian):
  char magic[8] = "EIREF001"
  u32 n_tokens, u32 n_vocab, u32 n_logit_rows, u32 n_gen
  i32 tokens[n_tokens]
  i32 top1[n_tokens]              argmax of the reference logits at every position
  f32 top1_margin[n_tokens]       best minus second-best logit at every position
  u32 logit_positions[n_logit_rows]
  f32 logits[n_logit_rows][n_vocab]
  i32 gen[n_gen]                  greedy continuation after the whole prompt (does not stop at EOS)
Logit rows: every position for prompts of <= 256 tokens, otherwise every 16th
position (0, 16, 32, ...) plus the last 32 positions.

manifest.txt: one line per .ref file: "<file.ref> <model.gguf>"; a relative model
path is relative to the manifest's directory (tiny models), otherwise absolute.
golden_info.txt: human-readable statistics (margins, decoded continuations).
"""
from __future__ import annotations

import argparse
import os
import struct
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llama_ref  # noqa: E402

MAGIC = b"EIREF001"
GPL3 = "/usr/share/common-licenses/GPL-3"
CHUNK = 256
ALL_ROWS_MAX = 256

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
SHORT_PROMPTS = [
    # (name, system or None, user text, chat?)
    ("chat_capital", None, "What is the capital of France?", True),
    ("chat_poem", SYSTEM, "Write a short poem about the sea.", True),
    ("chat_math", None, "What is 12 times 7? Answer briefly.", True),
    ("plain_fox", None, "The quick brown fox jumps over the lazy dog. The quick brown fox", False),
    ("plain_code", None, 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n', False),
]
N_GEN_SHORT = 32
N_GEN_TINY = 8


# ----------------------------------------------------------------------------
# tokenizer

def load_tokenizer(path: str):
    # The reference tokenizer (tokenizer_ref.py, checked against HF `tokenizers` on a corpus);
    # when it cannot be loaded the golden files cannot be trusted: fail, never fall back.
    import tokenizer_ref  # written alongside this file
    return tokenizer_ref.load(path), "tokenizer_ref"


def token_strings(path: str) -> list[str]:
    import gguf
    r = gguf.GGUFReader(path)
    return list(r.fields["tokenizer.ggml.tokens"].contents())


def byte_decode(tokens: list[str], ids) -> str:
    """Decode byte-level BPE ids to text (for printing only)."""
    sys.path.insert(0, HERE)
    from make_tiny_gguf import bytes_to_unicode
    u2b = {u: b for b, u in bytes_to_unicode().items()}
    out = bytearray()
    for i in ids:
        s = tokens[int(i)]
        if s.startswith("<|") and s.endswith("|>"):
            out += s.encode()
        else:
            out += bytes(u2b.get(c, ord("?")) for c in s)
    return out.decode("utf-8", errors="replace")


def chatml_ids(enc, vocab: list[str], system: str | None, user: str) -> list[int]:
    im_start = vocab.index("<|im_start|>")
    im_end = vocab.index("<|im_end|>")
    ids: list[int] = []
    if system is not None:
        ids += [im_start] + enc("system\n" + system) + [im_end] + enc("\n")
    ids += [im_start] + enc("user\n" + user) + [im_end] + enc("\n")
    ids += [im_start] + enc("assistant\n")
    return ids


def text_prefix_ids(enc, lines: list[str], max_tokens: int) -> tuple[list[int], str]:
    """Encodes the longest prefix of whole lines whose encoding has <= max_tokens tokens."""
    lo, hi = 1, len(lines)
    while lo < hi:  # binary search on the number of lines
        mid = (lo + hi + 1) // 2
        if len(enc("".join(lines[:mid]))) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    text = "".join(lines[:lo])
    return enc(text), text


# ----------------------------------------------------------------------------
# reference evaluation + file writing

def logit_positions(n: int) -> list[int]:
    if n <= ALL_ROWS_MAX:
        return list(range(n))
    return sorted(set(range(0, n, 16)) | set(range(max(0, n - 32), n)))


def evaluate(model, ids: list[int], n_gen: int):
    """Returns (top1, margin, positions, rows, gen, gen_margins) using one KV-cached session."""
    n = len(ids)
    pos = logit_positions(n)
    want = np.zeros(n, bool)
    want[pos] = True
    top1 = np.empty(n, np.int32)
    margin = np.empty(n, np.float32)
    rows = np.empty((len(pos), model.hp.n_vocab), np.float32)
    r = 0
    sess = llama_ref.Session(model, capacity=n + n_gen)
    last = None
    for i in range(0, n, CHUNK):
        lg = sess.hidden(ids[i:i + CHUNK]) @ model.output.T  # float64
        top1[i:i + len(lg)] = lg.argmax(axis=1)
        t2 = np.partition(lg, -2, axis=1)[:, -2:]
        margin[i:i + len(lg)] = t2[:, 1] - t2[:, 0]
        sel = want[i:i + len(lg)]
        rows[r:r + sel.sum()] = lg[sel]
        r += int(sel.sum())
        last = lg[-1]
    assert r == len(pos)
    gen, gen_margins = [], []
    for step in range(n_gen):
        t = int(np.argmax(last))
        t2 = np.partition(last, -2)[-2:]
        gen.append(t)
        gen_margins.append(float(t2[1] - t2[0]))
        if step + 1 < n_gen:
            last = sess.eval([t])[-1]
    return top1, margin, np.asarray(pos, np.uint32), rows, gen, gen_margins


def write_ref(path: str, ids, n_vocab: int, top1, margin, pos, rows, gen):
    ids = np.asarray(ids, "<i4")
    assert rows.shape == (len(pos), n_vocab)
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<4I", len(ids), n_vocab, len(pos), len(gen)))
        f.write(ids.tobytes())
        f.write(np.asarray(top1, "<i4").tobytes())
        f.write(np.asarray(margin, "<f4").tobytes())
        f.write(np.asarray(pos, "<u4").tobytes())
        f.write(np.ascontiguousarray(rows, "<f4").tobytes())
        f.write(np.asarray(gen, "<i4").tobytes())


def read_ref(path: str) -> dict:
    """Parses a .ref file (used by check_reference.py and for self-verification)."""
    b = open(path, "rb").read()
    assert b[:8] == MAGIC, path
    n, V, R, G = struct.unpack_from("<4I", b, 8)
    o = 24
    def take(dt, cnt):
        nonlocal o
        a = np.frombuffer(b, dt, cnt, o)
        o += a.nbytes
        return a
    d = dict(tokens=take("<i4", n), top1=take("<i4", n), margin=take("<f4", n),
             positions=take("<u4", R), logits=take("<f4", R * V).reshape(R, V), gen=take("<i4", G),
             n_vocab=V)
    assert o == len(b), f"{path}: {len(b) - o} trailing bytes"
    return d


class Golden:
    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        os.makedirs(out_dir, exist_ok=True)
        self.entries: dict[str, str] = {}
        self.info: list[str] = []

    def add(self, name: str, model_ref: str, model, ids, n_gen: int, vocab=None):
        t0 = time.time()
        top1, margin, pos, rows, gen, gmar = evaluate(model, list(ids), n_gen)
        fname = f"{name}.ref"
        write_ref(os.path.join(self.out_dir, fname), ids, model.hp.n_vocab, top1, margin, pos, rows, gen)
        self.entries[fname] = model_ref
        line = (f"{fname}: n_tokens={len(ids)} n_logit_rows={len(pos)} n_gen={n_gen} "
                f"min_margin={margin.min():.4g} n_margin<0.01={(margin < 0.01).sum()} "
                f"min_gen_margin={min(gmar) if gmar else float('nan'):.4g} time={time.time() - t0:.1f}s")
        if vocab is not None and gen:
            line += f"\n    gen: {byte_decode(vocab, gen)!r}"
        print(line, flush=True)
        self.info.append(line)

    def write_manifest(self):
        path = os.path.join(self.out_dir, "manifest.txt")
        entries = {}
        if os.path.exists(path):  # keep entries of earlier runs whose files still exist
            for ln in open(path):
                parts = ln.split()
                if len(parts) == 2 and os.path.exists(os.path.join(self.out_dir, parts[0])):
                    entries[parts[0]] = parts[1]
        entries.update(self.entries)
        with open(path, "w") as f:
            for k in sorted(entries):
                f.write(f"{k} {entries[k]}\n")
        with open(os.path.join(self.out_dir, "golden_info.txt"), "a") as f:
            f.write(f"# run {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            for ln in self.info:
                f.write(ln + "\n")


def real_model(g: Golden, model_path: str):
    t0 = time.time()
    model_path = os.path.abspath(model_path)
    model = llama_ref.load(model_path)
    tok, how = load_tokenizer(model_path)
    vocab = token_strings(model_path)
    print(f"loaded {model_path} in {time.time() - t0:.1f}s; tokenizer: {how}", flush=True)
    enc = tok.encode
    for name, system, text, chat in SHORT_PROMPTS:
        ids = chatml_ids(enc, vocab, system, text) if chat else enc(text)
        g.add(name, model_path, model, ids, N_GEN_SHORT, vocab)
    lines = open(GPL3, encoding="utf-8").read().splitlines(keepends=True)
    start7 = next(i for i, ln in enumerate(lines) if ln.strip().startswith("7. Additional Terms."))
    ids, _ = text_prefix_ids(enc, lines[start7:], 1024)
    g.add("long_1k", model_path, model, ids, 0)
    ids, _ = text_prefix_ids(enc, lines, 4600)
    assert len(ids) > 4096
    g.add("long_4k", model_path, model, ids, 0)
    print(f"real model total {time.time() - t0:.1f}s", flush=True)


def tiny_models(g: Golden, seed: int = 99):
    import make_tiny_gguf
    import zlib
    t0 = time.time()
    paths = make_tiny_gguf.generate(g.out_dir)
    for name, path in paths.items():
        model = llama_ref.load(path)
        rng = np.random.default_rng(seed + zlib.crc32(name.encode()) % 100000)
        n = int(rng.integers(40, 71))
        ids = [int(x) for x in rng.integers(0, model.hp.n_vocab, n)]
        g.add(f"tiny_{name}", os.path.basename(path), model, ids, N_GEN_TINY)
    print(f"tiny models total {time.time() - t0:.1f}s", flush=True)


# ----------------------------------------------------------------------------
# weight decoding: random blocks decoded by the gguf package (an oracle independent of the
# engine's decoders)

DEQUANT_MAGIC = b"EIDQV001"


def write_dequant_vectors(out_dir: str, seed: int = 5) -> str:
    """dequant_vectors.bin: magic, u32 count; per entry u32 ggml type, u32 n_elems, u32 n_bytes,
    the encoded bytes, f32 decoded[n_elems]. Random bytes everywhere except the fp16/bf16 scale
    fields, which get finite random values (a NaN scale would make every comparison moot)."""
    from gguf import GGMLQuantizationType as QT
    from gguf.quants import dequantize
    rng = np.random.default_rng(seed)
    # type: (block bytes, block elements, offsets of 2-byte float scale fields)
    layouts = {QT.Q4_0: (18, 32, [0]), QT.Q4_1: (20, 32, [0, 2]), QT.Q8_0: (34, 32, [0]),
               QT.Q4_K: (144, 256, [0, 2]), QT.Q6_K: (210, 256, [208])}
    entries = []
    for qt, (nb, ne, scale_at) in layouts.items():
        n_blocks = 8
        raw = rng.integers(0, 256, (n_blocks, nb), dtype=np.uint8)
        for off in scale_at:
            scales = rng.normal(0.0, 0.05, n_blocks).astype(np.float16)
            raw[:, off:off + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
        decoded = dequantize(raw.reshape(-1), qt).astype(np.float32).reshape(-1)
        entries.append((int(qt), n_blocks * ne, raw.tobytes(), decoded))
    for qt, dt in ((QT.F16, np.float16), (QT.BF16, None)):
        n = 96
        if dt is not None:
            vals = rng.normal(0.0, 3.0, n).astype(dt)
            raw = vals.tobytes()
        else:
            bits = (rng.normal(0.0, 3.0, n).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
            raw = bits.tobytes()
        decoded = dequantize(np.frombuffer(raw, np.uint8), qt).astype(np.float32).reshape(-1)
        entries.append((int(qt), n, raw, decoded))
    path = os.path.join(out_dir, "dequant_vectors.bin")
    with open(path, "wb") as f:
        f.write(DEQUANT_MAGIC)
        f.write(struct.pack("<I", len(entries)))
        for qt, n, raw, decoded in entries:
            assert np.isfinite(decoded).all(), qt
            f.write(struct.pack("<3I", qt, n, len(raw)))
            f.write(raw)
            f.write(np.asarray(decoded, "<f4").tobytes())
    print(f"wrote {path}: {len(entries)} types", flush=True)
    return path


# ----------------------------------------------------------------------------
# KV policies (policy_ref.py): teacher-forced logits in batches of L, past several folds

def evaluate_policy(session, ids: list[int], all_rows: bool):
    """(top1, margin, positions, rows) of teacher-forced logits through a policy session."""
    import policy_ref
    lg = policy_ref.teacher_forced(session, ids)
    top1 = lg.argmax(axis=1).astype(np.int32)
    t2 = np.partition(lg, -2, axis=1)[:, -2:]
    margin = (t2[:, 1] - t2[:, 0]).astype(np.float32)
    pos = list(range(len(ids))) if all_rows else logit_positions(len(ids))
    return top1, margin, np.asarray(pos, np.uint32), lg[pos].astype(np.float32)


def write_kept(path: str, kept) -> None:
    """The positions a selection session holds at the end: u32 n_layer, u32 n_kv_head, then per
    layer and KV head u32 count and that many i32 positions, in cache order."""
    with open(path, "wb") as f:
        f.write(struct.pack("<2I", len(kept), len(kept[0])))
        for layer in kept:
            for p in layer:
                f.write(struct.pack("<I", len(p)))
                f.write(np.asarray(p, "<i4").tobytes())


class PolicyGolden:
    """policy_manifest.txt: "<ref> <model> <policy> <S> <W> <L> <update> <gate>", gate "none", a
    .gguf gate file or a .bin of raw gate parameters (policy_ref.Gate.write_bin)."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.lines: list[str] = []

    def add(self, name, model_path, model, ids, policy, S, W, L, update, gate_spec, gate, all_rows):
        import policy_ref
        t0 = time.time()
        if policy in ("snapkv", "pyramidkv"):
            budget = S + W  # the engine's default budget; observation window 8, pool kernel 7, beta 20
            budgets = ([budget] * model.hp.n_layer if policy == "snapkv"
                       else policy_ref.pyramid_budgets(model.hp.n_layer, budget, 8, 20.0))
            sess = policy_ref.SelectionSession(model, budgets, L)
            sess.n_left = 0
        else:
            sess = policy_ref.WindowSession(model, S, W, L, memory=policy == "edgeinfinite", update=update,
                                            gate=gate)
        top1, margin, pos, rows = evaluate_policy(sess, ids, all_rows)
        fname = f"{name}.ref"
        write_ref(os.path.join(self.out_dir, fname), ids, model.hp.n_vocab, top1, margin, pos, rows, [])
        if policy in ("snapkv", "pyramidkv"):
            write_kept(os.path.join(self.out_dir, f"{name}.kept"), sess.pos)
        self.lines.append(f"{fname} {model_path} {policy} {S} {W} {L} {update} {gate_spec}")
        print(f"{fname}: {policy} S={S} W={W} L={L} {update} gate={os.path.basename(gate_spec)} "
              f"n_tokens={len(ids)} folded={sess.n_left} min_margin={margin.min():.4g} "
              f"time={time.time() - t0:.1f}s", flush=True)

    def write_manifest(self):
        with open(os.path.join(self.out_dir, "policy_manifest.txt"), "w") as f:
            for ln in sorted(self.lines):
                f.write(ln + "\n")


def tiny_policies(pg: PolicyGolden, seed: int = 7) -> dict[str, str]:
    """Three tiny shapes (GQA with normal RoPE, QKV bias with NEOX RoPE, Q4_K weights): streaming,
    EdgeInfinite without a gate, with a scalar gate and the delta rule, with a linear gate and the
    linear rule; S=2 W=24 L=16 and 120 tokens: seven folds."""
    import make_tiny_gguf
    import policy_ref
    paths = make_tiny_gguf.generate(pg.out_dir, ["gqa_odd", "qkv_bias", "q4_k"])
    for name, path in paths.items():
        model = llama_ref.load(path)
        rng = np.random.default_rng(seed + len(name))
        ids = [int(x) for x in rng.integers(0, model.hp.n_vocab, 120)]
        hp = model.hp
        q_dim = hp.n_head * hp.head_dim_k
        rel = os.path.basename(path)
        pg.add(f"policy_tiny_{name}_streaming", rel, model, ids, "streaming", 2, 24, 16, "delta", "none", None, True)
        pg.add(f"policy_tiny_{name}_edge_nogate", rel, model, ids, "edgeinfinite", 2, 24, 16, "delta", "none", None,
               True)
        pg.add(f"policy_tiny_{name}_snapkv", rel, model, ids, "snapkv", 2, 30, 16, "delta", "none", None, True)
        pg.add(f"policy_tiny_{name}_pyramidkv", rel, model, ids, "pyramidkv", 2, 30, 16, "delta", "none", None, True)
        for kind, update in (("scalar", "delta"), ("linear", "linear")):
            gate = policy_ref.Gate.random(rng, kind, hp.n_layer, hp.n_head, q_dim)
            gate_file = f"policy_tiny_{name}_{kind}.gate.bin"
            gate.write_bin(os.path.join(pg.out_dir, gate_file), hp.n_head, q_dim)
            pg.add(f"policy_tiny_{name}_edge_{kind}_{update}", rel, model, ids, "edgeinfinite", 2, 24, 16, update,
                   gate_file, gate, True)
    return paths


def tiny_gate_gradients(out_dir: str, paths: dict[str, str], seed: int = 21) -> list[str]:
    """The gradient of a batch's next-token loss with respect to the memory gate's parameters, by
    central differences of the float64 reference (policy_ref.WindowSession), with the session's
    state before the batch held fixed (the truncation the engine's gate training implements).
    Linear gates, delta rule, S=2 W=16 L=8, 49 tokens: the batch at 40 reads a memory of 24 folded
    tokens. One text file per tiny shape (paths: the tiny models tiny_policies made), and one with
    a query projection in the gate (gqa_odd_query):
      model FILE / gate FILE / shape S W L UPDATE / tokens N ids... / batch FIRST N / loss NLL
      bias LAYER HEAD DNLL          (every head of every layer)
      weight LAYER INDEX DNLL       (8 seeded entries of each layer's [n_head, 2 q_dim] weights)
      query LAYER INDEX DNLL        (8 seeded entries of each layer's [n_head, d, d] projection)"""
    import copy
    import policy_ref
    written = []
    for name, projected in (("gqa_odd", False), ("qkv_bias", False), ("gqa_odd", True)):
        path = paths[name]
        t0 = time.time()
        model = llama_ref.load(path)
        hp = model.hp
        q_dim = hp.n_head * hp.head_dim_k
        rng = np.random.default_rng(seed + len(name) + (100 if projected else 0))
        ids = [int(x) for x in rng.integers(0, hp.n_vocab, 49)]
        gate = policy_ref.Gate.random(rng, "linear", hp.n_layer, hp.n_head, q_dim, projected)
        name = name + ("_query" if projected else "")
        gate_file = f"gate_grad_tiny_{name}.gate.bin"
        gate.write_bin(os.path.join(out_dir, gate_file), hp.n_head, q_dim)
        first, n = 40, 8
        sess = policy_ref.WindowSession(model, 2, 16, 8, memory=True, update="delta", gate=gate)
        for b in range(0, first, 8):
            sess.eval(ids[b:b + 8])
        targets = ids[first + 1:first + n + 1]

        def loss(g) -> float:
            s = copy.deepcopy(sess)
            s.gate = g
            logits = s.eval(ids[first:first + n])
            mx = logits.max(axis=1, keepdims=True)
            lse = mx[:, 0] + np.log(np.exp(logits - mx).sum(axis=1))
            return float(np.sum(lse - logits[np.arange(n), targets]))

        def derivative(perturb) -> float:
            h = 1e-5
            plus, minus = copy.deepcopy(gate), copy.deepcopy(gate)
            perturb(plus, h)
            perturb(minus, -h)
            return (loss(plus) - loss(minus)) / (2 * h)

        lines = [f"model {os.path.basename(path)}", f"gate {gate_file}", "shape 2 16 8 delta",
                 "tokens " + str(len(ids)) + " " + " ".join(map(str, ids)), f"batch {first} {n}",
                 f"loss {loss(gate):.12g}"]
        for il in range(hp.n_layer):
            for h in range(hp.n_head):
                def bump(g, d, il=il, h=h):
                    g.bias[il][h] += d
                lines.append(f"bias {il} {h} {derivative(bump):.12g}")
        for il in range(hp.n_layer):
            for j in rng.choice(hp.n_head * 2 * q_dim, 8, replace=False):
                r, c = divmod(int(j), 2 * q_dim)
                def bump(g, d, il=il, r=r, c=c):
                    g.weight[il][r, c] += d
                lines.append(f"weight {il} {int(j)} {derivative(bump):.12g}")
        for il in range(hp.n_layer if projected else 0):
            d = hp.head_dim_k
            for j in rng.choice(hp.n_head * d * d, 8, replace=False):
                h, rest = divmod(int(j), d * d)
                r, c = divmod(rest, d)
                def bump(g, dd, il=il, h=h, r=r, c=c):
                    g.query[il][h, r, c] += dd
                lines.append(f"query {il} {int(j)} {derivative(bump):.12g}")
        fname = f"gate_grad_tiny_{name}.txt"
        with open(os.path.join(out_dir, fname), "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"{fname}: {len(lines) - 6} derivatives time={time.time() - t0:.1f}s", flush=True)
        written.append(fname)
    return written


def real_policies(pg: PolicyGolden, model_path: str):
    """The real model, streaming and EdgeInfinite with the shipped gate (beside the model), at
    S=4 W=252 L=128 over ~900 tokens of GPL-3 text: four folds."""
    import policy_ref
    model_path = os.path.abspath(model_path)
    gate_path = model_path[:-len(".gguf")] + ".gate.gguf"
    if not os.path.exists(gate_path):
        raise SystemExit(f"no gate file beside the model: {gate_path} (scripts/setup installs it)")
    model = llama_ref.load(model_path)
    tok, how = load_tokenizer(model_path)
    lines = open(GPL3, encoding="utf-8").read().splitlines(keepends=True)
    ids, _ = text_prefix_ids(tok.encode, lines, 900)
    pg.add("policy_real_streaming", model_path, model, ids, "streaming", 4, 252, 128, "delta", "none", None, False)
    gate = policy_ref.Gate.load_gguf(gate_path)
    pg.add("policy_real_edgeinfinite", model_path, model, ids, "edgeinfinite", 4, 252, 128, "delta", gate_path, gate,
           False)


def main():
    ap = argparse.ArgumentParser(description="write golden .ref files from the numpy reference")
    ap.add_argument("--model", help="real GGUF model (llama/qwen2)")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--tiny", action="store_true", help="also generate tiny random-weight models and their refs")
    ap.add_argument("--policies", action="store_true",
                    help="also write StreamingLLM / EdgeInfinite references (policy_ref.py), tiny and real")
    a = ap.parse_args()
    if not a.model and not a.tiny:
        ap.error("nothing to do: give --model and/or --tiny")
    g = Golden(a.out_dir)
    t0 = time.time()
    if a.model:
        real_model(g, a.model)
    if a.tiny:
        tiny_models(g)
        write_dequant_vectors(a.out_dir)
    g.write_manifest()
    if a.policies:
        pg = PolicyGolden(a.out_dir)
        if a.tiny:
            tiny_gate_gradients(a.out_dir, tiny_policies(pg))
        if a.model:
            real_policies(pg, a.model)
        pg.write_manifest()
        for ln in pg.lines:
            read_ref(os.path.join(a.out_dir, ln.split()[0]))
    for fname in g.entries:  # re-read everything we wrote
        read_ref(os.path.join(a.out_dir, fname))
    total = sum(os.path.getsize(os.path.join(a.out_dir, f)) for f in g.entries)
    print(f"wrote {len(g.entries)} .ref files ({total / 1e6:.1f} MB) to {a.out_dir} in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
