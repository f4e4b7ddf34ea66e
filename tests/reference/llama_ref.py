#!/usr/bin/env python3
"""Plain numpy reference implementation of the Llama-family forward pass.

The model is read from a GGUF file with the `gguf` package.  Every tensor is
dequantised with `gguf.quants.dequantize` (pure numpy, independent of the C++
engine's kernels) and then converted to float64.  ALL arithmetic below is done
in float64 (weights, activations, RoPE angles, softmax, logits): this file is a
numerical reference, not a fast implementation.

Supported:
  * arch `llama`  : RoPE "normal" mode (rotate adjacent pairs x[2i], x[2i+1]),
                    which is how llama.cpp treats llama-arch GGUFs (the HF->GGUF
                    converter permutes the Q/K rows for that).
  * arch `qwen2`  : Q/K/V biases `blk.N.attn_{q,k,v}.bias`, RoPE NEOX mode
                    (rotate pairs x[i], x[i + n_rot/2]).
  * `{arch}.rope.scaling.type` == "linear" with `{arch}.rope.scaling.factor`
    (positions are multiplied by 1/factor), and the older
    `{arch}.rope.scale_linear` key.
  * `rope_freqs.weight` (llama3-style per-dimension frequency divisors).
  * grouped-query attention (query head h uses KV head h // (n_head/n_head_kv)),
    causal mask, SwiGLU FFN, RMSNorm, final norm, output projection tied to
    `token_embd.weight` when `output.weight` is absent.

Public API:
  load(path)                           -> Model
  forward_logits(model, token_ids)     -> float64 [n_tokens, n_vocab]
  greedy(model, prompt_ids, n)         -> list[int]
  Session(model).eval(ids)             -> float64 logits for the new ids (KV cached)
  iter_logits(model, ids, chunk)       -> yields (start_pos, logits chunk)

Long sequences are processed in chunks (default 256 tokens) with a growing KV
cache, so memory stays bounded by O(chunk * n_ctx) for the attention scores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf.quants import dequantize

DTYPE = np.float64  # compute precision of the reference

ROPE_NORMAL = "normal"
ROPE_NEOX = "neox"
_ARCH_ROPE = {"llama": ROPE_NORMAL, "qwen2": ROPE_NEOX}


@dataclass
class HParams:
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_vocab: int
    head_dim_k: int
    head_dim_v: int
    n_rot: int
    rope_mode: str
    rope_freq_base: float
    rope_freq_scale: float  # 1 / linear scaling factor
    rms_eps: float


@dataclass
class Layer:
    attn_norm: np.ndarray
    wq: np.ndarray  # [n_head*hd_k, n_embd]
    wk: np.ndarray  # [n_kv*hd_k, n_embd]
    wv: np.ndarray  # [n_kv*hd_v, n_embd]
    wo: np.ndarray  # [n_embd, n_head*hd_v]
    bq: np.ndarray | None
    bk: np.ndarray | None
    bv: np.ndarray | None
    ffn_norm: np.ndarray
    w_gate: np.ndarray  # [n_ff, n_embd]
    w_up: np.ndarray    # [n_ff, n_embd]
    w_down: np.ndarray  # [n_embd, n_ff]


@dataclass
class Model:
    hp: HParams
    tok_embd: np.ndarray   # [n_vocab, n_embd]
    output: np.ndarray     # [n_vocab, n_embd] (same object as tok_embd when tied)
    output_norm: np.ndarray
    layers: list[Layer]
    inv_freq: np.ndarray   # [n_rot/2] angle per position per pair (incl. scaling, rope_freqs)
    tied_output: bool
    tensor_types: dict[str, str] = field(default_factory=dict)
    path: str = ""


# ----------------------------------------------------------------------------
# GGUF reading

def _field(reader: gguf.GGUFReader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def dequant_tensor(t) -> np.ndarray:
    """Dequantise a ReaderTensor with gguf.quants.dequantize; returns float32
    shaped like the GGUF shape reversed (i.e. numpy [n_out, n_in] for matrices)."""
    qtype = QT(int(t.tensor_type))
    data = np.asarray(t.data)
    if qtype == QT.F32:
        out = data.view(np.float32)
    else:
        out = dequantize(data, qtype)
    shape = tuple(int(x) for x in reversed(t.shape))
    return np.asarray(out, dtype=np.float32).reshape(shape)


def load(path: str) -> Model:
    reader = gguf.GGUFReader(path)
    arch = _field(reader, "general.architecture")
    if arch not in _ARCH_ROPE:
        raise ValueError(f"unsupported architecture {arch!r}")

    def kv(name, default=None):
        v = _field(reader, f"{arch}.{name}", default)
        if v is None:
            raise KeyError(f"missing GGUF key {arch}.{name}")
        return v

    tensors = {t.name: t for t in reader.tensors}
    types = {t.name: QT(int(t.tensor_type)).name for t in reader.tensors}

    def W(name) -> np.ndarray:
        return dequant_tensor(tensors[name]).astype(DTYPE)

    def Wopt(name):
        return W(name) if name in tensors else None

    n_embd = int(kv("embedding_length"))
    n_head = int(kv("attention.head_count"))
    n_head_kv = int(kv("attention.head_count_kv", n_head))
    hd_k = int(kv("attention.key_length", n_embd // n_head))
    hd_v = int(kv("attention.value_length", hd_k))
    n_rot = int(kv("rope.dimension_count", hd_k))
    tok_embd = W("token_embd.weight")
    n_vocab = tok_embd.shape[0]

    scale_type = _field(reader, f"{arch}.rope.scaling.type", "none")
    factor = 1.0
    if scale_type == "linear":
        factor = float(kv("rope.scaling.factor", 1.0))
    elif scale_type not in ("none", None):
        raise ValueError(f"unsupported rope scaling type {scale_type!r}")
    legacy = _field(reader, f"{arch}.rope.scale_linear")
    if legacy is not None and scale_type in ("none", None):
        factor = float(legacy)
    freq_scale = 1.0 / factor if factor else 1.0

    hp = HParams(
        arch=arch,
        n_layer=int(kv("block_count")),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        n_ff=int(kv("feed_forward_length")),
        n_vocab=n_vocab,
        head_dim_k=hd_k,
        head_dim_v=hd_v,
        n_rot=n_rot,
        rope_mode=_ARCH_ROPE[arch],
        rope_freq_base=float(kv("rope.freq_base", 10000.0)),
        rope_freq_scale=freq_scale,
        rms_eps=float(kv("attention.layer_norm_rms_epsilon", 1e-5)),
    )
    assert n_head % n_head_kv == 0, "n_head must be a multiple of n_head_kv"
    assert n_rot % 2 == 0 and n_rot <= hd_k

    # theta_i = pos * freq_scale * base^(-2i/n_rot) / rope_freqs[i]
    i = np.arange(n_rot // 2, dtype=np.float64)
    inv_freq = hp.rope_freq_base ** (-2.0 * i / n_rot) * freq_scale
    if "rope_freqs.weight" in tensors:
        ff = W("rope_freqs.weight").reshape(-1)
        assert ff.shape[0] == n_rot // 2, f"rope_freqs has {ff.shape[0]} entries, want {n_rot // 2}"
        inv_freq = inv_freq / ff

    layers = []
    for il in range(hp.n_layer):
        p = f"blk.{il}."
        layers.append(Layer(
            attn_norm=W(p + "attn_norm.weight").reshape(-1),
            wq=W(p + "attn_q.weight"), wk=W(p + "attn_k.weight"),
            wv=W(p + "attn_v.weight"), wo=W(p + "attn_output.weight"),
            bq=Wopt(p + "attn_q.bias"), bk=Wopt(p + "attn_k.bias"), bv=Wopt(p + "attn_v.bias"),
            ffn_norm=W(p + "ffn_norm.weight").reshape(-1),
            w_gate=W(p + "ffn_gate.weight"), w_up=W(p + "ffn_up.weight"),
            w_down=W(p + "ffn_down.weight"),
        ))
        L = layers[-1]
        assert L.wq.shape == (n_head * hd_k, n_embd), (p, L.wq.shape)
        assert L.wk.shape == (n_head_kv * hd_k, n_embd), (p, L.wk.shape)
        assert L.wv.shape == (n_head_kv * hd_v, n_embd), (p, L.wv.shape)
        assert L.wo.shape == (n_embd, n_head * hd_v), (p, L.wo.shape)
        assert L.w_down.shape == (n_embd, hp.n_ff), (p, L.w_down.shape)

    tied = "output.weight" not in tensors
    output = tok_embd if tied else W("output.weight")
    return Model(hp=hp, tok_embd=tok_embd, output=output,
                 output_norm=W("output_norm.weight").reshape(-1), layers=layers,
                 inv_freq=inv_freq, tied_output=tied, tensor_types=types, path=path)


# ----------------------------------------------------------------------------
# building blocks (float64)

def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def softmax(s: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in place (s is overwritten and returned)."""
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s


def qkv(L: Layer, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The layer's query, key and value projections of h [n, n_embd], with their biases when the
    model has them (flat: [n, heads * head_dim])."""
    q, k, v = h @ L.wq.T, h @ L.wk.T, h @ L.wv.T
    if L.bq is not None:
        q = q + L.bq
    if L.bk is not None:
        k = k + L.bk
    if L.bv is not None:
        v = v + L.bv
    return q, k, v


def ffn(L: Layer, x: np.ndarray, eps: float) -> np.ndarray:
    """x plus the layer's SwiGLU feed-forward block applied to its normed input."""
    h = rms_norm(x, L.ffn_norm, eps)
    return x + (silu(h @ L.w_gate.T) * (h @ L.w_up.T)) @ L.w_down.T


def rope(x: np.ndarray, pos: np.ndarray, inv_freq: np.ndarray, n_rot: int, mode: str) -> np.ndarray:
    """x: [n_tok, n_heads, head_dim]; rotates the first n_rot dims of each head."""
    ang = pos.astype(np.float64)[:, None] * inv_freq[None, :]      # [n_tok, n_rot/2]
    cos = np.cos(ang)[:, None, :]
    sin = np.sin(ang)[:, None, :]
    out = x.copy()
    half = n_rot // 2
    if mode == ROPE_NORMAL:
        x0 = x[..., 0:n_rot:2]
        x1 = x[..., 1:n_rot:2]
        out[..., 0:n_rot:2] = x0 * cos - x1 * sin
        out[..., 1:n_rot:2] = x0 * sin + x1 * cos
    elif mode == ROPE_NEOX:
        x0 = x[..., :half]
        x1 = x[..., half:n_rot]
        out[..., :half] = x0 * cos - x1 * sin
        out[..., half:n_rot] = x0 * sin + x1 * cos
    else:
        raise ValueError(mode)
    return out


class Session:
    """Holds a growing KV cache; eval() appends tokens and returns their logits."""

    def __init__(self, model: Model, capacity: int = 512):
        self.m = model
        hp = model.hp
        self.n_past = 0
        self.k = [np.empty((capacity, hp.n_head_kv, hp.head_dim_k), DTYPE) for _ in range(hp.n_layer)]
        self.v = [np.empty((capacity, hp.n_head_kv, hp.head_dim_v), DTYPE) for _ in range(hp.n_layer)]

    def _reserve(self, n_total: int):
        cap = self.k[0].shape[0]
        if n_total <= cap:
            return
        new_cap = max(n_total, 2 * cap)
        for il in range(len(self.k)):
            k = np.empty((new_cap,) + self.k[il].shape[1:], DTYPE)
            v = np.empty((new_cap,) + self.v[il].shape[1:], DTYPE)
            k[:self.n_past] = self.k[il][:self.n_past]
            v[:self.n_past] = self.v[il][:self.n_past]
            self.k[il], self.v[il] = k, v

    def hidden(self, ids: Sequence[int]) -> np.ndarray:
        """Runs the transformer on `ids` (appended after the cached tokens);
        returns the final-normed hidden states [n, n_embd]."""
        m, hp = self.m, self.m.hp
        ids = np.asarray(ids, dtype=np.int64)
        n = ids.shape[0]
        p0 = self.n_past
        self._reserve(p0 + n)
        T = p0 + n
        pos = np.arange(p0, T)
        H, KV, dk, dv = hp.n_head, hp.n_head_kv, hp.head_dim_k, hp.head_dim_v
        G = H // KV
        scale = 1.0 / math.sqrt(dk)
        # causal mask of these queries against the keys of this chunk (positions p0..T-1)
        mask = np.where(pos[None, :] <= pos[:, None], 0.0, -np.inf)  # [n, n]

        x = m.tok_embd[ids]  # [n, n_embd]
        for il, L in enumerate(m.layers):
            q, k, v = qkv(L, rms_norm(x, L.attn_norm, hp.rms_eps))
            q = rope(q.reshape(n, H, dk), pos, m.inv_freq, hp.n_rot, hp.rope_mode)
            k = rope(k.reshape(n, KV, dk), pos, m.inv_freq, hp.n_rot, hp.rope_mode)
            self.k[il][p0:T] = k
            self.v[il][p0:T] = v.reshape(n, KV, dv)
            K = self.k[il][:T].transpose(1, 2, 0)   # [KV, dk, T]
            V = self.v[il][:T].transpose(1, 0, 2)   # [KV, T, dv]
            # query head h -> kv head h // G
            qg = q.reshape(n, KV, G, dk).transpose(1, 2, 0, 3).reshape(KV, G * n, dk)
            s = qg @ K                               # [KV, G*n, T]
            s *= scale
            s = s.reshape(KV, G, n, T)
            s[..., p0:] += mask                      # keys before p0 are visible to every query
            s = softmax(s)
            o = s.reshape(KV, G * n, T) @ V          # [KV, G*n, dv]
            o = o.reshape(KV, G, n, dv).transpose(2, 0, 1, 3).reshape(n, H * dv)
            x = ffn(L, x + o @ L.wo.T, hp.rms_eps)
        self.n_past = T
        return rms_norm(x, m.output_norm, hp.rms_eps)

    def eval(self, ids: Sequence[int], chunk: int = 256) -> np.ndarray:
        outs = [self.hidden(ids[i:i + chunk]) @ self.m.output.T for i in range(0, len(ids), chunk)]
        return np.concatenate(outs, axis=0) if outs else np.zeros((0, self.m.hp.n_vocab), DTYPE)


def iter_logits(model: Model, token_ids: Sequence[int], chunk: int = 256) -> Iterator[tuple[int, np.ndarray]]:
    """Teacher-forced logits, yielded chunk by chunk as (start_position, [c, n_vocab])."""
    ids = list(int(t) for t in token_ids)
    s = Session(model, capacity=max(1, len(ids)))
    for i in range(0, len(ids), chunk):
        yield i, s.hidden(ids[i:i + chunk]) @ model.output.T


def forward_logits(model: Model, token_ids: Sequence[int], chunk: int = 256) -> np.ndarray:
    """Teacher-forced float64 logits at every position: [n_tokens, n_vocab]."""
    parts = [lg for _, lg in iter_logits(model, token_ids, chunk)]
    return np.concatenate(parts, axis=0)


def greedy(model: Model, prompt_ids: Sequence[int], n: int, chunk: int = 256,
           session: Session | None = None, return_margins: bool = False):
    """Greedy (argmax) continuation of n tokens after the prompt.  Does not stop
    at EOS.  If return_margins, also returns the top1-top2 logit gap per step."""
    s = session or Session(model, capacity=len(prompt_ids) + n)
    last = s.eval(list(prompt_ids), chunk)[-1]
    out, margins = [], []
    for step in range(n):
        t = int(np.argmax(last))
        out.append(t)
        top2 = np.partition(last, -2)[-2:]
        margins.append(float(top2[1] - top2[0]))
        if step + 1 < n:
            last = s.eval([t])[-1]
    return (out, margins) if return_margins else out


if __name__ == "__main__":
    import argparse
    import time
    ap = argparse.ArgumentParser(description="numpy Llama reference: greedy continuation of token ids")
    ap.add_argument("model")
    ap.add_argument("ids", nargs="+", type=int)
    ap.add_argument("-n", type=int, default=16)
    a = ap.parse_args()
    t0 = time.time()
    mdl = load(a.model)
    print("loaded", mdl.hp, f"{time.time() - t0:.1f}s")
    print(greedy(mdl, a.ids, a.n))
