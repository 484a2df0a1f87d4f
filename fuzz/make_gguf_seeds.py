"""Writes fuzz/corpus/gguf_file's seeds with llama.cpp's own gguf-py (PyPI `gguf`), so the fuzzer
starts from files an independent writer made:

  python make_gguf_seeds.py OUT_DIR     (a python with gguf and numpy: scripts/gguf-venv.sh prints one)

seed-types: one small tensor of every ggml type Bouquet reads and a metadata value of every type;
seed-gpt2: a Llama model's metadata with a byte-level BPE tokenizer (tokens, merges, types);
seed-llama: the same with a SentencePiece tokenizer (pieces, scores, byte pieces).
Each stays under the harness's 16 KiB input limit.
"""
import os
import sys

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q


def llama_metadata(w):
    w.add_uint32("llama.block_count", 2)
    w.add_uint32("llama.context_length", 64)
    w.add_uint32("llama.embedding_length", 8)
    w.add_uint32("llama.feed_forward_length", 16)
    w.add_uint32("llama.attention.head_count", 2)
    w.add_uint32("llama.attention.head_count_kv", 1)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_float32("llama.rope.freq_base", 10000.0)


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def types(path):
    rng = np.random.default_rng(25)
    w = gguf.GGUFWriter(path, "llama")
    for kind, value in [("uint8", 200), ("int8", -100), ("uint16", 60000), ("int16", -30000),
                        ("uint32", 4000000000), ("int32", -2000000000), ("float32", 0.25),
                        ("uint64", 2**63 + 5), ("int64", -(2**62)), ("float64", -1.5e300),
                        ("bool", True), ("string", "h\u00e9llo")]:
        getattr(w, "add_" + kind)("t." + kind, value)
    w.add_array("t.ints", [1, -2, 3])
    w.add_array("t.strings", ["a", "bc", ""])
    w.add_tensor("t_F32", rng.standard_normal((2, 32)).astype(np.float32))
    w.add_tensor("t_F16", rng.standard_normal((2, 32)).astype(np.float16))
    for name in ["BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K"]:
        qtype = getattr(Q, name)
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(1, size * (256 // block if block < 256 else 1)), dtype=np.uint8)
        w.add_tensor("t_" + name, raw, raw_dtype=qtype)
    finish(w)


def byte_char(b):  # GPT-2's printable stand-in for each byte
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    if b in printable:
        return chr(b)
    return chr(256 + sorted(set(range(256)) - set(printable)).index(b))


def gpt2(path):
    w = gguf.GGUFWriter(path, "llama")
    llama_metadata(w)
    tokens = [byte_char(b) for b in range(256)] + ["\u0120t", "he", "\u0120the", "<|endoftext|>", "<tool>"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([1] * 259 + [3, 4])
    w.add_token_merges(["\u0120 t", "h e", "\u0120t he"])
    w.add_bos_token_id(259)
    w.add_eos_token_id(259)
    w.add_add_bos_token(False)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")
    finish(w)


def llama(path):
    w = gguf.GGUFWriter(path, "llama")
    llama_metadata(w)
    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    pieces += [(f"<0x{b:02X}>", 0.0, 6) for b in range(0, 256, 15)]
    pieces += [(p, -float(i), 1) for i, p in enumerate(["\u2581", "\u2581t", "he", "\u2581the", "h", "e", "t", "\u65e5"])]
    w.add_tokenizer_model("llama")
    w.add_token_list([p for p, _, _ in pieces])
    w.add_token_scores([s for _, s, _ in pieces])
    w.add_token_types([t for _, _, t in pieces])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    finish(w)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    types(os.path.join(out, "seed-types"))
    gpt2(os.path.join(out, "seed-gpt2"))
    llama(os.path.join(out, "seed-llama"))
    for name in sorted(os.listdir(out)):
        print(name, os.path.getsize(os.path.join(out, name)), "bytes")


if __name__ == "__main__":
    main()
