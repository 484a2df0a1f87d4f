#!/usr/bin/env python3
"""Independent numpy reference of BLOOM's forward pass (float64), for Bouquet's gpu tests.

usage: IDS="1 2 3" bloom_ref.py MODEL_DIR [n_new]

Reads config.json and the weights (model.safetensors, or the shards named by
model.safetensors.index.json; F32, F16 or BF16; tensor names with or without "transformer.").
Implements the equations as BLOOM publishes them: LayerNorm on the word embeddings; per block
LayerNorm -> fused QKV (features per head as [q, k, v]) -> causal softmax(q.k / sqrt(d) + ALiBi)
-> dense, residual; LayerNorm -> dense_h_to_4h -> tanh GELU -> dense_4h_to_h, residual; final
LayerNorm; logits against the word embeddings (tied) or lm_head.weight. ALiBi follows the paper's
slope recursion, with the bias slope * key position as the BLOOM code adds it. No KV cache: every
step recomputes the whole sequence.

Prints "greedy ids: ..." (n_new greedy tokens after IDS) and "prompt logits: JSON", the logits of
every prompt position as a list of lists.
"""
import json
import math
import os
import struct
import sys

import numpy as np


def read_safetensors(path):
    raw = open(path, "rb").read()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + size])
    base = 8 + size
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        a, b = v["data_offsets"]
        buf = raw[base + a:base + b]
        if v["dtype"] == "F32":
            t = np.frombuffer(buf, "<f4")
        elif v["dtype"] == "F16":
            t = np.frombuffer(buf, "<f2")
        elif v["dtype"] == "BF16":
            t = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"{path}: tensor {name} has dtype {v['dtype']}")
        out[name] = t.astype(np.float64).reshape(v["shape"])
    return out


def read_weights(d):
    index = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) \
        else ["model.safetensors"]
    weights = {}
    for f in files:
        for name, t in read_safetensors(os.path.join(d, f)).items():
            weights[name[len("transformer."):] if name.startswith("transformer.") else name] = t
    return weights


def alibi_slopes(n):
    # Press et al., "Train Short, Test Long": a geometric series starting at 2^(-8/n) with that
    # ratio; for n not a power of two, the series of the closest lower power of two followed by
    # every other slope of the series for twice that many heads.
    def power_of_two(m):
        start = 2 ** (-2 ** -(math.log2(m) - 3))
        return [start * start ** i for i in range(m)]
    if math.log2(n).is_integer():
        return power_of_two(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_two(closest) + alibi_slopes(2 * closest)[0::2][:n - closest]


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def main():
    d = sys.argv[1]
    n_new = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    cfg = json.load(open(os.path.join(d, "config.json")))
    hidden = cfg.get("hidden_size", cfg.get("n_embed"))
    layers = cfg.get("n_layer", cfg.get("num_hidden_layers"))
    heads = cfg.get("n_head", cfg.get("num_attention_heads"))
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    hd = hidden // heads
    W = read_weights(d)
    slopes = np.array(alibi_slopes(heads))
    lm_head = W["word_embeddings.weight"] if cfg.get("tie_word_embeddings", True) \
        else W["lm_head.weight"]

    def forward(ids):
        T = len(ids)
        x = layer_norm(W["word_embeddings.weight"][ids], W["word_embeddings_layernorm.weight"],
                       W["word_embeddings_layernorm.bias"], eps)
        alibi = slopes[:, None, None] * np.arange(T)[None, None, :]       # [heads, 1, keys]
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for i in range(layers):
            p = f"h.{i}."
            h = layer_norm(x, W[p + "input_layernorm.weight"], W[p + "input_layernorm.bias"], eps)
            fused = h @ W[p + "self_attention.query_key_value.weight"].T \
                + W[p + "self_attention.query_key_value.bias"]
            fused = fused.reshape(T, heads, 3, hd)
            q, k, v = fused[:, :, 0], fused[:, :, 1], fused[:, :, 2]     # [T, heads, hd]
            s = np.einsum("thd,shd->hts", q, k) / math.sqrt(hd) + alibi + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = np.einsum("hts,shd->thd", s, v).reshape(T, hidden)
            x = x + ctx @ W[p + "self_attention.dense.weight"].T + W[p + "self_attention.dense.bias"]
            h = layer_norm(x, W[p + "post_attention_layernorm.weight"],
                           W[p + "post_attention_layernorm.bias"], eps)
            up = gelu_tanh(h @ W[p + "mlp.dense_h_to_4h.weight"].T + W[p + "mlp.dense_h_to_4h.bias"])
            x = x + up @ W[p + "mlp.dense_4h_to_h.weight"].T + W[p + "mlp.dense_4h_to_h.bias"]
        x = layer_norm(x, W["ln_f.weight"], W["ln_f.bias"], eps)
        return x @ lm_head.T

    ids = [int(t) for t in os.environ["IDS"].split()]
    out = []
    for _ in range(n_new):
        out.append(int(np.argmax(forward(ids + out)[-1])))
    print("greedy ids:", " ".join(map(str, out)))
    print("prompt logits:", json.dumps(forward(ids).tolist()))


if __name__ == "__main__":
    main()
