#!/usr/bin/env python3
"""Write a random-weight Transformer of the Qwen2.5-7B shape (the architecture of S1.1-7B, the
Transformer the paper compares PromptCoT-Mamba-7B with) as a bf16 GGUF that llama.cpp's `qwen2`
architecture loads, for the memory-capped throughput comparison of bench/paper_throughput.sh.

    python3 bench/transformer_gguf.py TOKENIZER_MODEL OUT.gguf [--layers N]

Shape (Qwen2.5-7B's config.json): 28 layers, hidden 3,584, MLP 18,944, 28 query heads and 4 key /
value heads of 128, biases on q, k and v, RMSNorm eps 1e-6, RoPE base 1e6, untied 152,064-row
embedding and output: 7.62 billion parameters, 15.2 GB in bf16, and 57,344 bytes of f16 key /
value cache per token (28 layers x 2 x 4 heads x 128 x 2 bytes). The weights are normal(0, 0.02)
values drawn once into a 128 MiB pool and tiled: the speed of a forward pass does not depend on
them. The vocabulary is the sentencepiece model's (as bench/llama_cpp_gguf.py writes it), padded
to 152,064 ids; the benchmark feeds random ids, so no text is ever tokenized. Writes tensor by
tensor (memory stays at the pool's size). Needs numpy, sentencepiece and llama.cpp's gguf-py.
"""

import argparse

import numpy as np
import gguf

from llama_cpp_gguf import add_sentencepiece_vocab

HIDDEN, FFN, HEADS, KV_HEADS, HEAD_DIM, VOCAB = 3584, 18944, 28, 4, 128, 152064


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tokenizer_model")
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=28, help="number of layers (28 for Qwen2.5-7B)")
    a = ap.parse_args()

    w = gguf.GGUFWriter(a.out, "qwen2")
    w.add_context_length(131072)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_block_count(a.layers)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(1e6)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    add_sentencepiece_vocab(w, a.tokenizer_model, VOCAB, 1, 2)

    # name -> shape (rows, columns as numpy has them); bf16 matrices, f32 norms and biases
    q_out, kv_out = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    tensors = [("token_embd.weight", (VOCAB, HIDDEN))]
    for l in range(a.layers):
        g = f"blk.{l}."
        tensors += [(g + "attn_norm.weight", (HIDDEN,)), (g + "attn_q.weight", (q_out, HIDDEN)),
                    (g + "attn_q.bias", (q_out,)), (g + "attn_k.weight", (kv_out, HIDDEN)),
                    (g + "attn_k.bias", (kv_out,)), (g + "attn_v.weight", (kv_out, HIDDEN)),
                    (g + "attn_v.bias", (kv_out,)), (g + "attn_output.weight", (HIDDEN, q_out)),
                    (g + "ffn_norm.weight", (HIDDEN,)), (g + "ffn_gate.weight", (FFN, HIDDEN)),
                    (g + "ffn_up.weight", (FFN, HIDDEN)), (g + "ffn_down.weight", (HIDDEN, FFN))]
    tensors += [("output_norm.weight", (HIDDEN,)), ("output.weight", (VOCAB, HIDDEN))]
    bf16 = gguf.GGMLQuantizationType.BF16
    for name, shape in tensors:
        n = int(np.prod(shape))
        if len(shape) == 2:
            w.add_tensor_info(name, shape, np.dtype(np.uint16), 2 * n, raw_dtype=bf16)
        else:
            w.add_tensor_info(name, shape, np.dtype(np.float32), 4 * n)

    pool_f32 = np.random.default_rng(0).standard_normal(1 << 26, dtype=np.float32) * 0.02
    pool = (pool_f32.view(np.uint32) >> 16).astype(np.uint16)  # bf16 by truncation
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    params, start = 0, 0
    for i, (name, shape) in enumerate(tensors):
        n = int(np.prod(shape))
        params += n
        if len(shape) == 1:  # norms 1, biases small
            w.write_tensor_data(np.full(shape, 1.0 if name.endswith("norm.weight") else 0.01, np.float32))
            continue
        t = np.empty(n, np.uint16)
        for o in range(0, n, len(pool)):  # tiled from the pool, each tensor starting elsewhere in it
            k = min(len(pool), n - o)
            s = (start + o) % len(pool)
            first = min(k, len(pool) - s)
            t[o:o + first] = pool[s:s + first]
            t[o + first:o + k] = pool[:k - first]
        start = (start + 7919 * 4096) % len(pool)
        w.write_tensor_data(t.reshape(shape))
        print(f"\r{a.out}: {i + 1}/{len(tensors)} tensors", end="", flush=True)
    w.close()
    print(f"\n{a.out}: qwen2, {a.layers} layers, {params:,} parameters")


if __name__ == "__main__":
    main()
