#!/usr/bin/env python3
"""One decode step of a random-weight Qwen2.5-7B-shaped Transformer in Hugging Face transformers
(SDPA attention, a static key / value cache), for the memory-capped throughput comparison of
bench/paper_throughput.sh: is transformers or llama.cpp the faster Transformer engine on this GPU?

    python3 bench/hf_transformer_step.py --batch B --context L [--context L2 ...] [--steps 8]

For each context L: a static cache of B sequences and L + steps positions, then `steps` decode
steps at positions L .. L + steps - 1, timed after one warm-up step. With a static cache every
step attends over the whole buffer (masked), so a step costs the same at every position of a
generation whose cache was sized for it: what transformers does when `generate` is given a static
cache. The cache's contents (zeros) do not change the time. Prints one JSON line per context:
batch, context, ms per step, tokens/s, peak GPU memory allocated by torch.
"""
import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import Qwen2Config, Qwen2ForCausalLM, StaticCache  # noqa: E402


def qwen25_7b_config():
    """Qwen2.5-7B's config.json (the architecture of S1.1-7B)."""
    return Qwen2Config(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                       num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=131072,
                       rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=False, attn_implementation="sdpa")


def static_cache(cfg, batch, length):
    """A StaticCache of BATCH sequences and LENGTH positions (its signature moved between versions)."""
    try:
        return StaticCache(config=cfg, max_cache_len=length)
    except TypeError:
        return StaticCache(config=cfg, max_batch_size=batch, max_cache_len=length, device="cuda", dtype=torch.bfloat16)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--context", type=int, action="append", required=True)
    ap.add_argument("--steps", type=int, default=8)
    a = ap.parse_args()
    cfg = qwen25_7b_config()
    torch.set_default_dtype(torch.bfloat16)
    t0 = time.perf_counter()
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(cfg).eval()
    print(f"# random Qwen2.5-7B shape on the GPU in {time.perf_counter() - t0:.1f} s "
          f"(transformers {transformers.__version__}, torch {torch.__version__})", flush=True)
    ids = torch.randint(3, cfg.vocab_size, (a.batch, 1), device="cuda")
    for L in a.context:
        cache = static_cache(cfg, a.batch, L + a.steps + 1)
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            for i in range(a.steps + 1):
                if i == 1:  # the first step allocates the cache: not timed
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                pos = torch.tensor([L + i], device="cuda")
                model(input_ids=ids, past_key_values=cache, cache_position=pos, use_cache=True)
        torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) / a.steps * 1e3
        print(json.dumps({"engine": "transformers", "batch": a.batch, "context": L, "ms_step": round(ms, 3),
                          "tok_s": round(a.batch / ms * 1e3, 1),
                          "peak_alloc_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}), flush=True)
        del cache
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
