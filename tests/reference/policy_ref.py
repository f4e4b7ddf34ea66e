#!/usr/bin/env python3
"""StreamingLLM and EdgeInfinite over llama_ref's model, in float64 numpy.

An independent statement of what the engine's `streaming` and `edgeinfinite` policies compute
(engine/kv/sink_window_cache.*, edgeinfinite_policy.*), written from the method, not from the
C++ code paths:

  * Input is processed in batches of at most L tokens (the caller gives the batches).
  * The cache holds S sink entries and a window; it never exceeds S + W + L entries. When a
    batch of n would not fit, the oldest min(L, entries past the sinks) window entries leave
    first.
  * RoPE positions are the entries' indices in the cache: sinks 0..S-1, then the window, then
    the batch. Keys are kept pre-RoPE here and rotated to their current index whenever they are
    attended to (the engine keeps them rotated and re-rotates the remaining ones by -n when n
    leave: the same numbers).
  * Softmax attention of the batch over [cache; batch], causal within the batch.
  * EdgeInfinite folds the leaving entries, per layer and KV head, into a memory M [d, d] and
    z [d] with sigma = ELU + 1 on the pre-RoPE keys: linear rule M += sigma(K)^T V, delta rule
    M += sigma(K)^T (V - sigma(K) M / (sigma(K) z + eps)) with M, z as they were before the
    batch; z += sum sigma(K). Then each query head reads its KV head's memory with its pre-RoPE
    query: A_mem = sigma(q) M / (sigma(q) z + eps). Read after the fold of this batch.
  * A gate mixes it in: scalar g = sigmoid(b[h]); linear g = sigmoid(W[h] . [A_mem; A_local] + b[h])
    over all heads' outputs of the token; out = g A_mem + (1 - g) A_local. Without a gate the
    memory is kept but not read, and before anything is folded it is not read either (the
    output is then exactly the base model's attention).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Sequence

import numpy as np

import llama_ref as lr

MEMORY_EPS = 1e-6  # the engine's kMemoryEps, part of the method's definition


def elu1(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Gate:
    kind: str                 # "scalar" or "linear"
    bias: list[np.ndarray]    # per layer [n_head]
    weight: list[np.ndarray]  # per layer [n_head, 2 * n_head * head_dim] (linear), else empty
    # per layer [n_head, head_dim (out), head_dim (in)]: the memory is read with P[h] q[h]; None: q
    query: list[np.ndarray] | None = None

    def values(self, il: int, a_mem: np.ndarray, a_loc: np.ndarray) -> np.ndarray:
        """g [n, n_head] from A_mem, A_local [n, n_head * head_dim]."""
        n = a_mem.shape[0]
        if self.kind == "scalar":
            return np.broadcast_to(sigmoid(self.bias[il])[None, :], (n, self.bias[il].shape[0]))
        both = np.concatenate([a_mem, a_loc], axis=1)
        return sigmoid(both @ self.weight[il].T + self.bias[il][None, :])

    @staticmethod
    def load_gguf(path: str) -> "Gate":
        import gguf
        r = gguf.GGUFReader(path)
        kind = str(r.fields["edgeinf.gate.kind"].contents())
        tensors = {t.name: t for t in r.tensors}
        bias, weight, query = [], [], []
        il = 0
        while f"blk.{il}.mem_gate.bias" in tensors:
            bias.append(lr.dequant_tensor(tensors[f"blk.{il}.mem_gate.bias"]).astype(np.float64).reshape(-1))
            w = tensors.get(f"blk.{il}.mem_gate.weight")
            weight.append(lr.dequant_tensor(w).astype(np.float64) if w is not None else np.zeros((0, 0)))
            q = tensors.get(f"blk.{il}.mem_gate.query")
            if q is not None:
                query.append(lr.dequant_tensor(q).astype(np.float64).reshape(len(bias[-1]), -1))
            il += 1
        if query:
            d = int(round(math.sqrt(query[0].shape[1])))
            query = [p.reshape(p.shape[0], d, d) for p in query]
        return Gate(kind, bias, weight, query if query else None)

    @staticmethod
    def random(rng: np.random.Generator, kind: str, n_layer: int, n_head: int, q_dim: int,
               projected: bool = False) -> "Gate":
        # Open enough that the memory matters: biases around 0 (g ~ 0.5), small weights; a query
        # projection near the identity.
        bias = [rng.normal(0.0, 1.0, n_head) for _ in range(n_layer)]
        weight = [rng.normal(0.0, 0.05, (n_head, 2 * q_dim)) if kind == "linear" else np.zeros((0, 0))
                  for _ in range(n_layer)]
        d = q_dim // n_head
        query = [np.eye(d)[None, :, :] + rng.normal(0.0, 0.2, (n_head, d, d)) for _ in range(n_layer)
                 ] if projected else []
        # The engine holds gate parameters in float32: round them once, here, so both use the same.
        bias = [b.astype(np.float32).astype(np.float64) for b in bias]
        weight = [w.astype(np.float32).astype(np.float64) for w in weight]
        query = [p.astype(np.float32).astype(np.float64) for p in query]
        return Gate(kind, bias, weight, query if projected else None)

    def write_bin(self, path: str, n_head: int, q_dim: int) -> None:
        """u32 kind (0 scalar, 1 linear; + 2 with a query projection), u32 n_layer, u32 n_head,
        u32 q_dim; per layer bias f32[n_head], when linear weight f32[n_head][2 * q_dim], with a
        projection query f32[n_head][head_dim][head_dim]."""
        with open(path, "wb") as f:
            kind = (1 if self.kind == "linear" else 0) + (2 if self.query is not None else 0)
            f.write(struct.pack("<4I", kind, len(self.bias), n_head, q_dim))
            for il in range(len(self.bias)):
                f.write(np.asarray(self.bias[il], "<f4").tobytes())
                if self.kind == "linear":
                    f.write(np.asarray(self.weight[il], "<f4").reshape(-1).tobytes())
                if self.query is not None:
                    f.write(np.asarray(self.query[il], "<f4").reshape(-1).tobytes())


class WindowSession:
    """A sink + window cache (StreamingLLM), and with memory=True EdgeInfinite's compressed memory."""

    def __init__(self, model: lr.Model, sink: int, window: int, segment: int, memory: bool = False,
                 update: str = "delta", gate: Gate | None = None):
        hp = model.hp
        assert hp.head_dim_k == hp.head_dim_v, "the memory is d x d"
        assert update in ("delta", "linear")
        self.m, self.S, self.W, self.L = model, sink, window, segment
        self.memory, self.delta, self.gate = memory, update == "delta", gate
        self.k = [np.zeros((0, hp.n_head_kv, hp.head_dim_k)) for _ in range(hp.n_layer)]  # pre-RoPE
        self.v = [np.zeros((0, hp.n_head_kv, hp.head_dim_v)) for _ in range(hp.n_layer)]
        d = hp.head_dim_k
        self.M = [np.zeros((hp.n_head_kv, d, d)) for _ in range(hp.n_layer)]
        self.z = [np.zeros((hp.n_head_kv, d)) for _ in range(hp.n_layer)]
        self.n_cached = 0
        self.n_left = 0

    def _fold(self, il: int, k: np.ndarray, v: np.ndarray) -> None:
        """k, v [m, n_kv, d] pre-RoPE."""
        for g in range(k.shape[1]):
            sk = elu1(k[:, g, :])
            val = v[:, g, :]
            if self.delta:
                retrieved = (sk @ self.M[il][g]) / (sk @ self.z[il][g] + MEMORY_EPS)[:, None]
                val = val - retrieved
            self.M[il][g] = self.M[il][g] + sk.T @ val
            self.z[il][g] = self.z[il][g] + sk.sum(axis=0)

    def _read(self, il: int, q: np.ndarray) -> np.ndarray:
        """q [n, n_head, d] pre-RoPE -> A_mem [n, n_head * d]."""
        hp = self.m.hp
        G = hp.n_head // hp.n_head_kv
        out = np.empty_like(q)
        for h in range(hp.n_head):
            g = h // G
            qh = q[:, h, :] if self.gate.query is None else q[:, h, :] @ self.gate.query[il][h].T
            sq = elu1(qh)
            out[:, h, :] = (sq @ self.M[il][g]) / (sq @ self.z[il][g] + MEMORY_EPS)[:, None]
        return out.reshape(q.shape[0], -1)

    def eval(self, ids: Sequence[int]) -> np.ndarray:
        """Logits [n, n_vocab] of one batch of n <= L tokens appended to the session."""
        m, hp = self.m, self.m.hp
        ids = np.asarray(ids, dtype=np.int64)
        n = ids.shape[0]
        assert 0 < n <= self.L
        S, cap = self.S, self.S + self.W + self.L
        n_leave = 0
        if self.n_cached + n > cap:
            n_leave = min(self.L, self.n_cached - min(self.n_cached, S))
        base = self.n_cached - n_leave
        assert base + n <= cap
        H, KV, d = hp.n_head, hp.n_head_kv, hp.head_dim_k
        G = H // KV
        scale = 1.0 / math.sqrt(d)
        pos_keys = np.arange(base + n)
        pos_q = np.arange(base, base + n)
        causal = np.where(pos_keys[None, :] <= pos_q[:, None], 0.0, -np.inf)  # [n, base + n]
        x = m.tok_embd[ids]
        for il, Lw in enumerate(m.layers):
            q, k, v = lr.qkv(Lw, lr.rms_norm(x, Lw.attn_norm, hp.rms_eps))
            q = q.reshape(n, H, d)
            k = k.reshape(n, KV, d)
            v = v.reshape(n, KV, d)
            kc, vc = self.k[il], self.v[il]
            if n_leave:
                if self.memory:
                    self._fold(il, kc[S:S + n_leave], vc[S:S + n_leave])
                kc = np.concatenate([kc[:S], kc[S + n_leave:]])
                vc = np.concatenate([vc[:S], vc[S + n_leave:]])
            read = self.memory and self.gate is not None and (self.n_left + n_leave) > 0
            a_mem = self._read(il, q) if read else None
            keys = np.concatenate([kc, k])
            vals = np.concatenate([vc, v])
            kr = lr.rope(keys, pos_keys, m.inv_freq, hp.n_rot, hp.rope_mode)
            qr = lr.rope(q, pos_q, m.inv_freq, hp.n_rot, hp.rope_mode)
            out = np.empty((n, H, d))
            for hh in range(H):
                p = lr.softmax((qr[:, hh, :] @ kr[:, hh // G, :].T) * scale + causal)
                out[:, hh, :] = p @ vals[:, hh // G, :]
            a_loc = out.reshape(n, H * d)
            if read:
                g = self.gate.values(il, a_mem, a_loc)  # [n, H]
                gg = np.repeat(g, d, axis=1)
                a_loc = gg * a_mem + (1.0 - gg) * a_loc
            x = lr.ffn(Lw, x + a_loc @ Lw.wo.T, hp.rms_eps)
            self.k[il], self.v[il] = keys, vals
        self.n_cached = base + n
        self.n_left += n_leave
        return lr.rms_norm(x, m.output_norm, hp.rms_eps) @ m.output.T


def pyramid_budgets(n_layer: int, budget: int, window: int, beta: float) -> list[int]:
    """PyramidKV: per-layer budgets falling linearly with depth, mean `budget`, the top layer
    keeping (budget - window) / beta selected entries besides the observation window."""
    lo = (budget - window) / beta
    hi = 2.0 * (budget - window) - lo
    step = (hi - lo) / (n_layer - 1) if n_layer > 1 else 0.0
    return [int(np.floor(hi - il * step + 0.5)) + window for il in range(n_layer)]


class SelectionSession:
    """SnapKV (and PyramidKV with per-layer budgets): every token is kept at its absolute RoPE
    position until a layer holds more than its budget; then, per KV head, the last `obs` entries
    stay, and of the earlier ones the budget - obs with the most votes: each of the last `obs`
    queries of every head of the group votes with its causal softmax over the keys, the votes
    are max-pooled along the keys (kernel `pool`), and the highest win (ties: the earlier)."""

    def __init__(self, model: lr.Model, budgets: list[int], segment: int, obs: int = 8, pool: int = 7):
        hp = model.hp
        self.m, self.L, self.obs, self.pool = model, segment, obs, pool
        self.budgets = budgets
        # Per layer and KV head: rotated keys [n_e, d] and values; per layer the last obs rotated
        # queries [<=obs, n_head, d].
        self.k = [[np.zeros((0, hp.head_dim_k)) for _ in range(hp.n_head_kv)] for _ in range(hp.n_layer)]
        self.v = [[np.zeros((0, hp.head_dim_v)) for _ in range(hp.n_head_kv)] for _ in range(hp.n_layer)]
        self.q = [np.zeros((0, hp.n_head, hp.head_dim_k)) for _ in range(hp.n_layer)]
        # Per layer and KV head: the absolute position of each kept entry.
        self.pos = [[np.zeros(0, np.int64) for _ in range(hp.n_head_kv)] for _ in range(hp.n_layer)]
        self.n_seen = 0

    def _select(self, il: int) -> None:
        hp = self.m.hp
        G = hp.n_head // hp.n_head_kv
        n = self.k[il][0].shape[0]
        budget = self.budgets[il]
        if n <= budget:
            return
        q = self.q[il]
        n_obs = min(q.shape[0], self.obs)
        q = q[-n_obs:]
        n_prefix, n_pick = n - n_obs, budget - n_obs
        scale = 1.0 / math.sqrt(hp.head_dim_k)
        r = self.pool // 2
        for g in range(hp.n_head_kv):
            keys = self.k[il][g]
            votes = np.zeros(n_prefix)
            for h in range(g * G, (g + 1) * G):
                for i in range(n_obs):
                    visible = n_prefix + i + 1
                    votes += lr.softmax((keys[:visible] @ q[i, h]) * scale)[:n_prefix]
            pooled = np.array([votes[max(0, j - r):min(n_prefix, j + r + 1)].max() for j in range(n_prefix)])
            order = sorted(range(n_prefix), key=lambda j: (-pooled[j], j))[:n_pick]
            keep = sorted(order) + list(range(n_prefix, n))
            self.k[il][g] = keys[keep]
            self.v[il][g] = self.v[il][g][keep]
            self.pos[il][g] = self.pos[il][g][keep]

    def eval(self, ids: Sequence[int]) -> np.ndarray:
        m, hp = self.m, self.m.hp
        ids = np.asarray(ids, dtype=np.int64)
        n = ids.shape[0]
        assert 0 < n <= self.L
        H, KV, d = hp.n_head, hp.n_head_kv, hp.head_dim_k
        G = H // KV
        scale = 1.0 / math.sqrt(d)
        pos = np.arange(self.n_seen, self.n_seen + n)
        x = m.tok_embd[ids]
        for il, Lw in enumerate(m.layers):
            q, k, v = lr.qkv(Lw, lr.rms_norm(x, Lw.attn_norm, hp.rms_eps))
            qr = lr.rope(q.reshape(n, H, d), pos, m.inv_freq, hp.n_rot, hp.rope_mode)
            kr = lr.rope(k.reshape(n, KV, d), pos, m.inv_freq, hp.n_rot, hp.rope_mode)
            v = v.reshape(n, KV, d)
            out = np.empty((n, H, d))
            for g in range(KV):
                self.k[il][g] = np.concatenate([self.k[il][g], kr[:, g]])
                self.v[il][g] = np.concatenate([self.v[il][g], v[:, g]])
                self.pos[il][g] = np.concatenate([self.pos[il][g], pos])
                n_e = self.k[il][g].shape[0]
                base = n_e - n
                mask = np.where(np.arange(n_e)[None, :] <= (base + np.arange(n))[:, None], 0.0, -np.inf)
                for hh in range(g * G, (g + 1) * G):
                    p = lr.softmax((qr[:, hh] @ self.k[il][g].T) * scale + mask)
                    out[:, hh] = p @ self.v[il][g]
            self.q[il] = np.concatenate([self.q[il], qr])[-self.obs:]
            x = lr.ffn(Lw, x + out.reshape(n, H * d) @ Lw.wo.T, hp.rms_eps)
        self.n_seen += n
        for il in range(hp.n_layer):
            self._select(il)
        return lr.rms_norm(x, m.output_norm, hp.rms_eps) @ m.output.T


def teacher_forced(session, ids: Sequence[int]) -> np.ndarray:
    """Logits at every position, fed in batches of the session's L."""
    L = session.L
    return np.concatenate([session.eval(ids[i:i + L]) for i in range(0, len(ids), L)], axis=0)


def self_check() -> None:
    """With room for everything, streaming equals full attention; with a gate of 0 (bias -inf),
    EdgeInfinite equals streaming; the fold equals a per-token loop of the rule."""
    import make_tiny_gguf
    import os
    import tempfile
    rng = np.random.default_rng(3)
    with tempfile.TemporaryDirectory() as d:
        path = make_tiny_gguf.generate(d, ["gqa_odd"])["gqa_odd"]
        model = lr.load(path)
        ids = list(rng.integers(0, model.hp.n_vocab, 70))
        full = lr.forward_logits(model, ids)
        roomy = teacher_forced(WindowSession(model, 2, 100, 16), ids)
        assert np.abs(roomy - full).max() < 1e-9, np.abs(roomy - full).max()
        stream = teacher_forced(WindowSession(model, 2, 24, 16), ids)
        assert np.abs(stream[:32] - full[:32]).max() < 1e-9  # before anything leaves (batch 3)
        assert np.abs(stream[40:] - full[40:]).max() > 1e-3   # and after
        closed = Gate("scalar", [np.full(model.hp.n_head, -np.inf)] * model.hp.n_layer, [np.zeros((0, 0))] * 8)
        edge0 = teacher_forced(WindowSession(model, 2, 24, 16, memory=True, gate=closed), ids)
        assert np.abs(edge0 - stream).max() < 1e-12
        # The batched delta fold equals the per-token definition with retrieval before the batch.
        s = WindowSession(model, 2, 24, 16, memory=True)
        k = rng.normal(size=(5, model.hp.n_head_kv, model.hp.head_dim_k))
        v = rng.normal(size=k.shape)
        s._fold(0, k, v)
        s._fold(0, k, v)
        M, z = np.zeros_like(s.M[0]), np.zeros_like(s.z[0])
        for _ in range(2):
            M0, z0 = M.copy(), z.copy()
            for t in range(5):
                for g in range(k.shape[1]):
                    sk = elu1(k[t, g])
                    ret = (sk @ M0[g]) / (sk @ z0[g] + MEMORY_EPS)
                    M[g] += np.outer(sk, v[t, g] - ret)
                    z[g] += sk
        assert np.abs(M - s.M[0]).max() < 1e-9 and np.abs(z - s.z[0]).max() < 1e-12
        # SnapKV with room for everything is full attention; PyramidKV's budgets average B.
        roomy_sel = SelectionSession(model, [200] * model.hp.n_layer, 16)
        sel = teacher_forced(roomy_sel, ids)
        assert np.abs(sel - full).max() < 1e-9
        assert all((p == np.arange(len(ids))).all() for layer in roomy_sel.pos for p in layer)
        # A tight budget keeps, per head, the budget's worth of distinct positions in order, the
        # observation window's last among them.
        tight = SelectionSession(model, [20] * model.hp.n_layer, 16)
        teacher_forced(tight, ids)
        for layer in tight.pos:
            for p in layer:
                assert len(p) <= 20 + 16 and (np.diff(p) > 0).all() and p[-1] == len(ids) - 1, p
        for n_layer in (2, 3, 30):
            b = pyramid_budgets(n_layer, 40, 8, 20.0)
            assert all(x >= y for x, y in zip(b, b[1:])) and abs(sum(b) / n_layer - 40) <= 0.5, b
        os.remove(path)
    print("policy_ref self-check: ok")


if __name__ == "__main__":
    self_check()
