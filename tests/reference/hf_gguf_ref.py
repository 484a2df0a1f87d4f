"""Hugging Face transformers on a GGUF file: an implementation written apart from Bouquet that
dequantizes the same file (transformers' own GGUF loader, via the gguf package).

  hf_gguf_ref.py FILE.gguf N < prompts.txt
For each line of stdin (a prompt, with "\\n" standing for a newline), prints one JSON line: the prompt's ids from transformers'
tokenizer for this file, the N greedy ids after them (float32, CPU, argmax at every step, EOS included), and the first step's logits
of the 5 best tokens.
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

path, count = sys.argv[1], int(sys.argv[2])
folder, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
torch.manual_seed(0)
torch.set_num_threads(max(1, os.cpu_count() // 2))
tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
model.eval()
for line in sys.stdin:
    prompt = line.rstrip("\n").replace("\\n", "\n")
    if not prompt:
        continue
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    # Plain argmax steps, not generate(): its logits processors (min_new_tokens masks EOS) would
    # change what the model chooses.
    greedy = []
    with torch.no_grad():
        out = model(torch.tensor([ids]), use_cache=True)
        logits = out.logits[0, -1]
        top = torch.topk(logits, 5)
        for _ in range(count):
            token = int(torch.argmax(out.logits[0, -1]))
            greedy.append(token)
            out = model(torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True)
    print(json.dumps({"prompt": prompt, "prompt_ids": ids, "greedy_ids": greedy,
                      "top": [[int(i), float(v)] for v, i in zip(top.values, top.indices)]}), flush=True)
