"""Writes GGUF files for Bouquet's tests with the `gguf` package (llama.cpp's own gguf-py), so
that the engine's reader is checked against an implementation written apart from it.

  gguf_make.py quant OUT.gguf EXPECTED.f32
      One tensor per ggml type Bouquet reads (t_F32, t_F16, t_BF16, t_Q8_0, t_Q4_0, t_Q4_1, t_Q4_K,
      t_Q5_K, t_Q6_K; 3 rows of 512 values; random blocks, seed 1234) and metadata of every value
      type. EXPECTED.f32 holds gguf.quants.dequantize() of each tensor, in that order, as raw f32.
  gguf_make.py llama MODEL_DIR OUT.gguf [F32|Q8_0]
      Converts a Hugging Face Llama folder (config.json, one F32 model.safetensors, optionally a
      SentencePiece tokenizer.model) the way llama.cpp's convert_hf_to_gguf.py does: its tensor
      names, Q/K rows permuted for its rope, the pieces, scores and types as tokenizer.ggml.*.
      Without tokenizer.model (a benchmark's random model) it writes a stand-in vocabulary.
"""
import json
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K"]
# Byte offsets of the f16 scale fields in each block: random bytes there could be inf or NaN.
SCALES = {"Q8_0": [0], "Q4_0": [0], "Q4_1": [0, 2], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


def quant(out, expected):
    rng = np.random.default_rng(1234)
    w = gguf.GGUFWriter(out, "llama")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 0.25)
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", -1.5e300)
    w.add_bool("t.bool", True)
    w.add_string("t.string", "héllo")
    w.add_array("t.ints", [1, -2, 3])
    w.add_array("t.strings", ["a", "bc", ""])
    rows, cols = 3, 512
    values = []
    for name in TYPES:
        qtype = getattr(Q, name)
        if name == "F32":
            data = rng.standard_normal((rows, cols)).astype(np.float32)
            w.add_tensor("t_" + name, data)
            values.append(data)
            continue
        if name == "F16":
            data = rng.standard_normal((rows, cols)).astype(np.float16)
            w.add_tensor("t_" + name, data)
            values.append(data.astype(np.float32))
            continue
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
        if name == "BF16":
            raw = rng.standard_normal((rows, cols)).astype(np.float32).view(np.uint32) >> 16
            raw = raw.astype(np.uint16).view(np.uint8).reshape(rows, cols // block, size)
        for offset in SCALES.get(name, []):
            scale = (rng.uniform(0.001, 0.1, size=(rows, cols // block)) * rng.choice([-1, 1], size=(rows, cols // block)))
            raw[:, :, offset:offset + 2] = scale.astype(np.float16).view(np.uint8).reshape(rows, cols // block, 2)
        raw = raw.reshape(rows, -1)
        w.add_tensor("t_" + name, raw, raw_dtype=qtype)
        values.append(gguf.quants.dequantize(raw, qtype).astype(np.float32).reshape(rows, cols))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(expected, "wb") as f:
        for v in values:
            f.write(np.ascontiguousarray(v, dtype="<f4").tobytes())


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", f"{name}: only F32 folders are converted"
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(data[b:end], dtype="<f4").reshape(e["shape"])
    return out


def varint(data, i):
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def fields(data):  # (field number, wire type, value) of one protobuf message
    i = 0
    while i < len(data):
        key, i = varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(data, i)
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 2:
            n, i = varint(data, i)
            value, i = data[i:i + n], i + n
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, wire, value


def spm_pieces(path):  # sentencepiece_model.proto: ModelProto.pieces = 1 {piece 1, score 2, type 3}
    pieces = []
    for number, _, value in fields(open(path, "rb").read()):
        if number == 1:
            piece, score, kind = "", 0.0, 1
            for n, _, v in fields(value):
                if n == 1:
                    piece = v.decode("utf-8")
                elif n == 2:
                    score = struct.unpack("<f", v)[0]
                elif n == 3:
                    kind = v
            pieces.append((piece, score, kind))
    return pieces


def standin_pieces(vocab):
    """`vocab` SentencePiece pieces (piece, score, type) for a model that has no tokenizer: the
    specials, the 256 byte pieces, "▁" and the printable ASCII characters, then numbered
    fillers, so that any text tokenizes (by characters) in both llama.cpp and Bouquet."""
    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    pieces += [(f"<0x{b:02X}>", 0.0, 6) for b in range(256)]
    pieces += [("\u2581", -1.0, 1)] + [(chr(c), -2.0, 1) for c in range(33, 127)]
    pieces += [(f"\u2581filler{i}", -3.0 - i * 1e-3, 1) for i in range(vocab - len(pieces))]
    if len(pieces) != vocab:
        raise ValueError(f"a stand-in vocabulary needs at least {len(pieces)} pieces, not {vocab}")
    return pieces


def permute(w, heads):  # convert_hf_to_gguf.py's LlamaModel.permute
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama(model_dir, out, qname="F32"):
    config = json.load(open(f"{model_dir}/config.json"))
    tensors = read_safetensors(f"{model_dir}/model.safetensors")
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    w = gguf.GGUFWriter(out, "llama")
    w.add_block_count(config["num_hidden_layers"])
    w.add_context_length(config.get("max_position_embeddings", 2048))
    w.add_embedding_length(config["hidden_size"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(config.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    w.add_rope_dimension_count(config["hidden_size"] // heads)
    w.add_vocab_size(config["vocab_size"])
    if "bos_token_id" in config:
        w.add_bos_token_id(config["bos_token_id"])
    if "eos_token_id" in config:
        w.add_eos_token_id(config["eos_token_id"])
    import os
    if os.path.exists(f"{model_dir}/tokenizer.model"):  # as convert_hf_to_gguf.py's SentencePiece vocab
        pieces = spm_pieces(f"{model_dir}/tokenizer.model")
        w.add_tokenizer_model("llama")
        w.add_token_list([p for p, _, _ in pieces])
        w.add_token_scores([sc for _, sc, _ in pieces])
        w.add_token_types([k for _, _, k in pieces])
        w.add_unk_token_id(next(i for i, (_, _, k) in enumerate(pieces) if k == 2))
        w.add_add_space_prefix(True)
    else:  # no tokenizer (a benchmark's random model): a stand-in SentencePiece vocabulary
        pieces = standin_pieces(config["vocab_size"])
        w.add_tokenizer_model("llama")
        w.add_token_list([p for p, _, _ in pieces])
        w.add_token_scores([sc for _, sc, _ in pieces])
        w.add_token_types([k for _, _, k in pieces])
        w.add_unk_token_id(0)
        w.add_add_space_prefix(True)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    block_names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                   "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                   "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                   "mlp.down_proj": "ffn_down"}
    for name in sorted(tensors):
        t = tensors[name]
        if name in names:
            new = names[name]
        else:
            parts = name.split(".")  # model.layers.N.<inner>.weight
            new = f"blk.{parts[2]}.{block_names['.'.join(parts[3:-1])]}.weight"
        if name.endswith("q_proj.weight"):
            t = permute(t, heads)
        if name.endswith("k_proj.weight"):
            t = permute(t, kv_heads)
        qtype = getattr(Q, qname)
        # As llama.cpp does, a tensor whose rows are not whole blocks stays unquantized.
        if t.ndim == 2 and qtype != Q.F32 and t.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0] == 0:
            w.add_tensor(new, gguf.quants.quantize(np.ascontiguousarray(t), qtype), raw_dtype=qtype)
        else:
            w.add_tensor(new, np.ascontiguousarray(t, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    if sys.argv[1] == "quant":
        quant(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "llama":
        llama(sys.argv[2], sys.argv[3], *(sys.argv[4:5]))
    else:
        sys.exit(__doc__)
