#!/usr/bin/env python3
"""Hugging Face transformers' Mamba2ForCausalLM on the same checkpoint, for the side-by-side
numbers of the GPU benchmark (bf16 weights on the GPU, the library's own code path: without the
mamba_ssm / causal_conv1d packages it runs its pure-PyTorch implementation).

Usage: python3 bench/hf_mamba2.py CHECKPOINT_DIR [--prompt-len 4096] [--gen-len 32]
Prints prefill tokens/s and decode tokens/s (greedy, with the library's cache), as one JSON line last.
"""
import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import Mamba2ForCausalLM  # noqa: E402


def timed_generate(model, ids, new_tokens):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--prompt-len", type=int, default=4096)
    ap.add_argument("--gen-len", type=int, default=32)
    a = ap.parse_args()
    t0 = time.perf_counter()
    model = Mamba2ForCausalLM.from_pretrained(a.checkpoint, dtype=torch.bfloat16).cuda().eval()
    print(f"loaded in {time.perf_counter() - t0:.1f} s (transformers {transformers.__version__}, torch {torch.__version__})")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (1, a.prompt_len), generator=g).cuda()
    short = ids[:, :16]
    timed_generate(model, short, 2)  # warm-up
    prefill = min(timed_generate(model, ids, 1) for _ in range(2))
    # decode rate from a short prompt, so that prefill time is negligible and subtracted
    t_one = timed_generate(model, short, 1)
    t_many = timed_generate(model, short, 1 + a.gen_len)
    decode = a.gen_len / (t_many - t_one)
    res = {"impl": "transformers", "version": transformers.__version__, "prompt_len": a.prompt_len,
           "prefill_tok_s": a.prompt_len / prefill, "decode_tok_s": decode,
           "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30}
    print(f"prefill {a.prompt_len} tokens: {res['prefill_tok_s']:.0f} tok/s; decode: {decode:.1f} tok/s")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
