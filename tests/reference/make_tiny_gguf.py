#!/usr/bin/env python3
"""Writes small random-weight GGUF models (llama / qwen2) with gguf.GGUFWriter.

Usage:  python make_tiny_gguf.py --out-dir D [--variants mha,q4_k,...] [--seed 1234]

Every file carries a tokenizer so that a loader which requires one can load it:
  * "gpt2" byte-level BPE (pre "gpt-2", the name llama.cpp recognises): the 256 GPT-2 byte tokens, a few merges,
    and control tokens <|endoftext|> (bos), <|im_start|>, <|im_end|> (eos);
  * variant `spm`: tokenizer.ggml.model "llama" (SentencePiece style):
    <unk>, <s>, </s>, <0x00>..<0xFF> (token_type 6 = byte), "▁" and single-character
    pieces, and merged pieces whose scores give the merge priority;
    add_space_prefix = true, add_bos_token = true.

Weights: matrices ~ normal(0, 1/sqrt(fan_in)), token embeddings ~ normal(0, 0.5),
norm weights ~ 1 + normal(0, 0.1), biases ~ normal(0, 0.2); norms, biases and
rope_freqs are always F32.  Quantised data: Q4_0, Q4_1, Q8_0, BF16 are produced by
gguf.quants.quantize from the float weights.  gguf-py cannot quantise K-quants,
so Q4_K and Q6_K blocks are RANDOM BYTES with the fp16 scale fields overwritten
by small finite values, chosen so that the dequantised weights have the same
standard deviation as the float weights would (see _random_kquant).  Block
layouts relied on (QK_K = 256 weights per block):
  Q4_K (144 bytes): d f16 [0:2], dmin f16 [2:4], scales[12] [4:16] (8 packed
                    6-bit scale/min pairs), qs[128] [16:144] (4-bit quants)
                    w = d * sc * q - dmin * m
  Q6_K (210 bytes): ql[128] [0:128], qh[64] [128:192], scales int8[16] [192:208],
                    d f16 [208:210];  w = d * sc * (q - 32)

GGUF shape convention: a matrix with n_out rows of n_in values is stored with
ne = [n_in, n_out]; gguf-py takes the numpy array shaped [n_out, n_in] (for
quantised data: uint8 [n_out, bytes_per_row] plus raw_dtype).
"""
from __future__ import annotations

import argparse
import os
import zlib
from dataclasses import dataclass, field

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf.quants import quantize, dequantize


@dataclass
class Variant:
    name: str
    arch: str = "llama"
    wtype: QT = QT.F32          # type of all 2-D weight matrices (incl. token_embd)
    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    n_layer: int = 2
    freq_base: float = 10000.0
    rms_eps: float = 1e-5
    untied: bool = False
    bias: bool = False
    rope_scale_linear: float = 0.0
    rope_freqs: bool = False
    tokenizer: str = "gpt2"
    extra: dict = field(default_factory=dict)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("mha", n_head=4, n_head_kv=4, n_ff=160),
    Variant("gqa_odd", wtype=QT.F16, n_embd=240, n_head=5, n_head_kv=1, n_ff=256, freq_base=50000.0),  # head_dim 48
    Variant("qkv_bias", arch="qwen2", wtype=QT.F16, n_embd=96, n_head=6, n_head_kv=2, n_ff=192,
            freq_base=1000000.0, rms_eps=1e-6, bias=True),
    Variant("untied", wtype=QT.Q8_0, untied=True),
    Variant("q4_0", wtype=QT.Q4_0, n_embd=128, n_ff=256),
    Variant("q4_1", wtype=QT.Q4_1, n_embd=128, n_ff=256, n_layer=3),
    Variant("q8_0", wtype=QT.Q8_0, n_embd=128, n_ff=256),
    Variant("q4_k", wtype=QT.Q4_K, n_embd=256, n_ff=512),
    Variant("q6_k", wtype=QT.Q6_K, n_embd=256, n_ff=512),
    Variant("bf16", wtype=QT.BF16),
    Variant("f16", wtype=QT.F16, n_layer=3),
    Variant("rope_scaled", rope_scale_linear=2.0, freq_base=1000.0),
    Variant("rope_freqs", n_embd=128, n_head=4, n_head_kv=2, rope_freqs=True, freq_base=500.0),
    Variant("spm", tokenizer="spm"),
]}

_FILE_TYPE = {
    QT.F32: gguf.LlamaFileType.ALL_F32, QT.F16: gguf.LlamaFileType.MOSTLY_F16,
    QT.BF16: gguf.LlamaFileType.MOSTLY_BF16, QT.Q4_0: gguf.LlamaFileType.MOSTLY_Q4_0,
    QT.Q4_1: gguf.LlamaFileType.MOSTLY_Q4_1, QT.Q8_0: gguf.LlamaFileType.MOSTLY_Q8_0,
    QT.Q4_K: gguf.LlamaFileType.MOSTLY_Q4_K_S, QT.Q6_K: gguf.LlamaFileType.MOSTLY_Q6_K,
}


# ----------------------------------------------------------------------------
# tokenizers

def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character mapping."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


GPT2_MERGES = [
    ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("e", "r"), ("a", "n"), ("o", "n"),
    ("Ġ", "a"), ("r", "e"), ("Ġ", "s"), ("a", "t"), ("e", "n"), ("Ġ", "w"), ("o", "r"),
    ("i", "s"), ("in", "g"), ("Ġ", "o"), ("Ġo", "f"), ("l", "l"), ("Ġ", "h"), ("e", "s"),
    ("Ġ", "c"), ("Ġ", "i"), ("Ġi", "s"), ("Ġ", "b"), ("o", "u"), ("Ġ", "f"), ("e", "d"),
    ("Ġa", "n"), ("Ġan", "d"), ("Ġ", "m"), ("l", "o"), ("ll", "o"), ("he", "llo"),
    ("Ġ", "hello"), ("Ċ", "Ċ"), ("Ġ", "Ġ"),
]


def gpt2_vocab():
    b2u = bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)]
    types = [gguf.TokenType.NORMAL] * 256
    merges = []
    for a, b in GPT2_MERGES:
        assert a in tokens and b in tokens, (a, b)
        merges.append(f"{a} {b}")
        if a + b not in tokens:
            tokens.append(a + b)
            types.append(gguf.TokenType.NORMAL)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    for s in specials:
        tokens.append(s)
        types.append(gguf.TokenType.CONTROL)
    return dict(tokens=tokens, types=types, merges=merges,
                bos=tokens.index("<|endoftext|>"), eos=tokens.index("<|im_end|>"))


SPM_MERGES = [
    ("▁", "t"), ("h", "e"), ("▁t", "he"), ("i", "n"), ("e", "r"), ("a", "n"), ("o", "n"),
    ("▁", "a"), ("r", "e"), ("▁", "s"), ("a", "t"), ("e", "n"), ("▁", "w"), ("o", "r"),
    ("i", "s"), ("in", "g"), ("▁", "o"), ("▁o", "f"), ("l", "l"), ("▁", "h"), ("e", "s"),
    ("▁", "i"), ("▁i", "s"), ("▁a", "n"), ("▁an", "d"), ("l", "o"), ("ll", "o"),
    ("▁h", "e"), ("▁he", "llo"), ("▁w", "or"), ("▁wor", "l"), ("▁worl", "d"),
]


def spm_vocab():
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    scores = [0.0, 0.0, 0.0]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(gguf.TokenType.BYTE)
        scores.append(0.0)
    singles = ["▁"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("TIH.,!?'")
    for i, s in enumerate(singles):
        tokens.append(s)
        types.append(gguf.TokenType.NORMAL)
        scores.append(-1000.0 - i)
    for rank, (a, b) in enumerate(SPM_MERGES):
        assert a in tokens and b in tokens, (a, b)
        if a + b not in tokens:
            tokens.append(a + b)
            types.append(gguf.TokenType.NORMAL)
            scores.append(-float(rank))  # earlier merge = higher score
    return dict(tokens=tokens, types=types, scores=scores, bos=1, eos=2, unk=0)


# ----------------------------------------------------------------------------
# tensors

def _random_kquant(rng: np.random.Generator, n_out: int, n_in: int, qtype: QT, target_std: float) -> np.ndarray:
    """Random K-quant blocks with controlled fp16 scale fields; returns uint8 [n_out, bytes]."""
    bsz, tsz = gguf.GGML_QUANT_SIZES[qtype]
    assert n_in % bsz == 0
    nb = n_out * (n_in // bsz)
    blk = rng.integers(0, 256, size=(nb, tsz), dtype=np.uint8)
    if qtype == QT.Q4_K:
        d = rng.uniform(0.5, 1.5, nb)
        dmin = d * 7.5 * rng.uniform(0.8, 1.2, nb)   # E[sc*q] = 7.5 E[m] -> roughly zero mean
        fields = [(0, d), (2, dmin)]
    elif qtype == QT.Q6_K:
        sc = rng.integers(-40, 41, size=(nb, 16)).astype(np.int8)  # keep d in the normal fp16 range
        blk[:, 192:208] = sc.view(np.uint8)
        d = rng.uniform(0.5, 1.5, nb)
        fields = [(208, d)]
    else:
        raise ValueError(qtype)

    def write(scale: float):
        for off, vals in fields:
            v = np.maximum(vals * scale, 1e-4).astype(np.float16)
            assert np.all(np.isfinite(v))
            blk[:, off:off + 2] = v.reshape(-1, 1).view(np.uint8).reshape(nb, 2)

    write(1.0)
    std = float(dequantize(blk.reshape(n_out, -1), qtype).std())
    write(target_std / std)
    return blk.reshape(n_out, -1)


def _add_matrix(w: gguf.GGUFWriter, rng, name: str, n_out: int, n_in: int, qtype: QT, std: float):
    if qtype in (QT.Q4_K, QT.Q6_K):
        data = _random_kquant(rng, n_out, n_in, qtype, std)
        w.add_tensor(name, data, raw_dtype=qtype)
        return
    x = (rng.standard_normal((n_out, n_in)) * std).astype(np.float32)
    if qtype == QT.F32:
        w.add_tensor(name, x)
    elif qtype == QT.F16:
        w.add_tensor(name, x.astype(np.float16))
    else:
        w.add_tensor(name, quantize(x, qtype), raw_dtype=qtype)


def write_variant(v: Variant, path: str, seed: int) -> str:
    rng = np.random.default_rng(seed)
    hd = v.head_dim
    assert v.n_embd == v.n_head * hd and v.n_head % v.n_head_kv == 0

    if v.tokenizer == "spm":
        voc = spm_vocab()
    else:
        voc = gpt2_vocab()
    n_vocab = len(voc["tokens"])

    w = gguf.GGUFWriter(path, v.arch)
    w.add_name(f"edgeinf-tiny-{v.name}")
    w.add_file_type(int(_FILE_TYPE[v.wtype]))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_vocab_size(n_vocab)
    w.add_context_length(2048)
    w.add_embedding_length(v.n_embd)
    w.add_feed_forward_length(v.n_ff)
    w.add_block_count(v.n_layer)
    w.add_head_count(v.n_head)
    w.add_head_count_kv(v.n_head_kv)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(v.freq_base)
    w.add_layer_norm_rms_eps(v.rms_eps)
    if v.rope_scale_linear:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(v.rope_scale_linear)

    if v.tokenizer == "spm":
        w.add_tokenizer_model("llama")
        w.add_token_list(voc["tokens"])
        w.add_token_scores(voc["scores"])
        w.add_token_types([int(t) for t in voc["types"]])
        w.add_bos_token_id(voc["bos"])
        w.add_eos_token_id(voc["eos"])
        w.add_unk_token_id(voc["unk"])
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)
        w.add_add_space_prefix(True)
    else:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt-2")  # llama.cpp's name for the GPT-2 pre-tokenizer
        w.add_token_list(voc["tokens"])
        w.add_token_types([int(t) for t in voc["types"]])
        w.add_token_merges(voc["merges"])
        w.add_bos_token_id(voc["bos"])
        w.add_eos_token_id(voc["eos"])
        w.add_add_bos_token(False)

    E, F, H, KV = v.n_embd, v.n_ff, v.n_head, v.n_head_kv
    norm = lambda n: (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)
    _add_matrix(w, rng, "token_embd.weight", n_vocab, E, v.wtype, 0.5)
    if v.rope_freqs:
        i = np.arange(hd // 2, dtype=np.float64) / max(1, hd // 2 - 1)
        ff = (1.0 + 7.0 * i ** 2).astype(np.float32)  # 1 for high-frequency dims up to 8 for the lowest
        w.add_tensor("rope_freqs.weight", ff)
    for il in range(v.n_layer):
        p = f"blk.{il}."
        w.add_tensor(p + "attn_norm.weight", norm(E))
        _add_matrix(w, rng, p + "attn_q.weight", H * hd, E, v.wtype, E ** -0.5)
        _add_matrix(w, rng, p + "attn_k.weight", KV * hd, E, v.wtype, E ** -0.5)
        _add_matrix(w, rng, p + "attn_v.weight", KV * hd, E, v.wtype, E ** -0.5)
        if v.bias:
            w.add_tensor(p + "attn_q.bias", (0.2 * rng.standard_normal(H * hd)).astype(np.float32))
            w.add_tensor(p + "attn_k.bias", (0.2 * rng.standard_normal(KV * hd)).astype(np.float32))
            w.add_tensor(p + "attn_v.bias", (0.2 * rng.standard_normal(KV * hd)).astype(np.float32))
        _add_matrix(w, rng, p + "attn_output.weight", E, H * hd, v.wtype, (H * hd) ** -0.5)
        w.add_tensor(p + "ffn_norm.weight", norm(E))
        _add_matrix(w, rng, p + "ffn_gate.weight", F, E, v.wtype, E ** -0.5)
        _add_matrix(w, rng, p + "ffn_up.weight", F, E, v.wtype, E ** -0.5)
        _add_matrix(w, rng, p + "ffn_down.weight", E, F, v.wtype, F ** -0.5)
    w.add_tensor("output_norm.weight", norm(E))
    if v.untied:
        _add_matrix(w, rng, "output.weight", n_vocab, E, v.wtype, 4.0 * E ** -0.5)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def generate(out_dir: str, names=None, seed: int = 1234) -> dict[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    out = {}
    for name in names or VARIANTS:
        path = os.path.join(out_dir, f"tiny_{name}.gguf")
        write_variant(VARIANTS[name], path, seed + zlib.crc32(name.encode()) % 100000)
        out[name] = path
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    for name, path in generate(a.out_dir, a.variants.split(","), a.seed).items():
        print(f"{name:12s} {os.path.getsize(path):9d} bytes  {path}")


if __name__ == "__main__":
    main()
