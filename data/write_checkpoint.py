#!/usr/bin/env python3
"""Write a random-weight checkpoint with the exact Hugging Face layout of Mamba-Codestral-7B-v0.1.

    python3 data/write_checkpoint.py --out DIR [--layers L] [--seed S] [--tokenizer PATH]
                                     [--max-shard-size BYTES] [--real-token-ids] [--dry-run]

DIR receives config.json (the real Codestral values; "time_step_limit": [0.0, Infinity] with the
bare Infinity token), bf16 shards model-0000k-of-0000n.safetensors of at most --max-shard-size
bytes each (default 5e9, HF's "5GB") and model.safetensors.index.json, exactly as HF's
save_pretrained names them. If everything fits in one shard the file is model.safetensors and
there is no index (HF does the same). --tokenizer copies a tokenizer.json into DIR.

Only numpy and the standard library are used. Memory stays bounded: tensors are generated and
written in fixed slices of SLICE elements by a small thread pool (at most 2 x threads slices in
flight), never a whole tensor. The values are deterministic for a given --seed and independent of
the thread count and of --layers (each slice has its own generator seeded from (seed, crc32 of
the tensor name, slice index)), so layer 0 of a 1-layer checkpoint equals layer 0 of a 64-layer
one. Every file is written under a temporary name and renamed when complete; on failure the
temporary file is removed. The index and config.json are written last.

Values (plausible, not trained): linear weights N(0, 1/sqrt(fan_in)), embeddings N(0, 1),
RMSNorm weights 1 + 0.05 N(0,1), A_log = log U(1, 16), dt_bias = inverse softplus of dt
log-uniform in [1e-3, 1e-1], D = 1 + 0.1 N(0,1), conv1d weight and bias U(+-1/sqrt(K)).
float32 draws are rounded to bf16 to nearest even.

--dry-run prints the tensor table, shard plan, total parameters and bytes, and writes nothing.
The 64-layer layout has 7,285,403,648 parameters (14,570,807,296 bytes of bf16 data).
"""

import argparse
import json
import math
import os
import shutil
import signal
import struct
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Mamba-Codestral-7B-v0.1
D_MODEL = 4096
N_LAYERS = 64
N_HEADS = 128
HEAD_DIM = 64
D_STATE = 128
N_GROUPS = 8
D_CONV = 4
EXPAND = 2
VOCAB = 32768
D_INNER = N_HEADS * HEAD_DIM                       # 8192
CONV_DIM = D_INNER + 2 * N_GROUPS * D_STATE        # 10240
IN_PROJ = 2 * D_INNER + 2 * N_GROUPS * D_STATE + N_HEADS  # 18560
assert D_INNER == EXPAND * D_MODEL

EXPECTED_PARAMS_64 = 7_285_403_648
SLICE = 1 << 22  # elements per generated slice (16 MiB of float32)
BF16_BYTES = 2


def codestral_config(n_layers, real_token_ids=False):
    """The real Mamba-Codestral-7B-v0.1 config.json fields (HF conversion, transformers 4.44)."""
    bos, eos, pad = (0, 0, 0) if real_token_ids else (1, 2, 0)
    return {
        "_name_or_path": "/raid/pablo/codestral-hf-good/",
        "architectures": ["Mamba2ForCausalLM"],
        "bos_token_id": bos,
        "chunk_size": 256,
        "conv_kernel": D_CONV,
        "eos_token_id": eos,
        "expand": EXPAND,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": D_MODEL,
        "initializer_range": 0.1,
        "intermediate_size": D_INNER,
        "layer_norm_epsilon": 1e-05,
        "model_type": "mamba2",
        "n_groups": N_GROUPS,
        "norm_before_gate": True,
        "num_heads": N_HEADS,
        "num_hidden_layers": n_layers,
        "pad_token_id": pad,
        "rescale_prenorm_residual": False,
        "residual_in_fp32": True,
        "rms_norm": True,
        "state_size": D_STATE,
        "tie_word_embeddings": False,
        "time_step_floor": 0.0001,
        "time_step_init_scheme": "random",
        "time_step_limit": [0.0, float("inf")],  # json.dumps writes the bare token Infinity
        "time_step_max": 0.1,
        "time_step_min": 0.001,
        "time_step_rank": 256,
        "time_step_scale": 1.0,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.44.0.dev0",
        "use_bias": False,
        "use_cache": True,
        "use_conv_bias": True,
        "vocab_size": VOCAB,
    }


# --------------------------------------------------------------------------------------------
# Tensor table, in HF's state_dict order (what save_pretrained shards by)
# --------------------------------------------------------------------------------------------
class Spec:
    __slots__ = ("name", "shape", "kind", "numel")

    def __init__(self, name, shape, kind):
        self.name, self.shape, self.kind = name, tuple(shape), kind
        self.numel = int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self):
        return self.numel * BF16_BYTES


def tensor_table(n_layers):
    t = [Spec("backbone.embeddings.weight", (VOCAB, D_MODEL), "embed")]
    for l in range(n_layers):
        p = f"backbone.layers.{l}."
        t += [
            Spec(p + "norm.weight", (D_MODEL,), "norm"),
            Spec(p + "mixer.dt_bias", (N_HEADS,), "dt_bias"),
            Spec(p + "mixer.A_log", (N_HEADS,), "A_log"),
            Spec(p + "mixer.D", (N_HEADS,), "D"),
            Spec(p + "mixer.conv1d.weight", (CONV_DIM, 1, D_CONV), "conv"),
            Spec(p + "mixer.conv1d.bias", (CONV_DIM,), "conv"),
            Spec(p + "mixer.in_proj.weight", (IN_PROJ, D_MODEL), "linear"),
            Spec(p + "mixer.norm.weight", (D_INNER,), "norm"),
            Spec(p + "mixer.out_proj.weight", (D_MODEL, D_INNER), "linear"),
        ]
    t += [Spec("backbone.norm_f.weight", (D_MODEL,), "norm"),
          Spec("lm_head.weight", (VOCAB, D_MODEL), "linear")]
    return t


def plan_shards(specs, max_shard_size):
    """HF's rule: fill a shard in order until the next tensor would exceed the limit."""
    shards, cur, size = [], [], 0
    for s in specs:
        if cur and size + s.nbytes > max_shard_size:
            shards.append(cur)
            cur, size = [], 0
        cur.append(s)
        size += s.nbytes
    if cur:
        shards.append(cur)
    n = len(shards)
    if n == 1:
        return [("model.safetensors", shards[0])]
    return [(f"model-{i + 1:05d}-of-{n:05d}.safetensors", sh) for i, sh in enumerate(shards)]


def safetensors_header(specs):
    """8-byte little-endian length + JSON header padded with spaces to a multiple of 8."""
    hdr = {"__metadata__": {"format": "pt"}}
    off = 0
    for s in specs:
        hdr[s.name] = {"dtype": "BF16", "shape": list(s.shape), "data_offsets": [off, off + s.nbytes]}
        off += s.nbytes
    js = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
    js += b" " * ((-len(js)) % 8)
    return struct.pack("<Q", len(js)) + js, off


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------
def f32_to_bf16(a):
    """float32 array -> uint16 bf16 bits, round to nearest even (no NaNs occur here)."""
    b = a.view(np.uint32)
    t = b >> 16
    t &= 1
    t += 0x7FFF
    t += b
    t >>= 16
    return t.astype("<u2")


def gen_slice(seed, spec, idx):
    """Slice idx (SLICE elements of the flattened tensor) of tensor spec, as bf16 bytes."""
    n = min(SLICE, spec.numel - idx * SLICE)
    rng = np.random.default_rng(np.random.SeedSequence(
        [seed, zlib.crc32(spec.name.encode()), idx]))
    k = spec.kind
    if k == "embed":
        a = rng.standard_normal(n, dtype=np.float32)
    elif k == "linear":
        a = rng.standard_normal(n, dtype=np.float32)
        a *= np.float32(1.0 / math.sqrt(spec.shape[1]))
    elif k == "norm":
        a = rng.standard_normal(n, dtype=np.float32)
        a *= np.float32(0.05)
        a += np.float32(1.0)
    elif k == "conv":
        a = rng.random(n, dtype=np.float32)
        a *= np.float32(2.0 / math.sqrt(D_CONV))
        a -= np.float32(1.0 / math.sqrt(D_CONV))
    elif k == "A_log":
        a = np.log(rng.uniform(1.0, 16.0, n)).astype(np.float32)
    elif k == "dt_bias":
        dt = np.exp(rng.uniform(math.log(1e-3), math.log(1e-1), n))
        a = (dt + np.log(-np.expm1(-dt))).astype(np.float32)  # inverse softplus
    elif k == "D":
        a = (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)
    else:
        raise ValueError(k)
    return f32_to_bf16(a).tobytes()


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
class Progress:
    def __init__(self, total):
        self.total, self.done, self.t0, self.last = total, 0, time.time(), 0.0

    def add(self, n, force=False):
        self.done += n
        now = time.time()
        if force or now - self.last >= 1.0:
            self.last = now
            dt = max(now - self.t0, 1e-9)
            sys.stderr.write(f"\rwrite_checkpoint: {self.done / 1e6:10.1f} / {self.total / 1e6:.1f} MB "
                             f"({100.0 * self.done / self.total:5.1f}%) {self.done / 1e6 / dt:7.1f} MB/s")
            sys.stderr.flush()


def atomic_write_bytes(path, data):
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_shard(path, specs, seed, pool, window, progress):
    header, data_len = safetensors_header(specs)
    tmp = f"{path}.tmp-{os.getpid()}"
    pending = []
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            jobs = ((s, i) for s in specs for i in range((s.numel + SLICE - 1) // SLICE))
            written = 0

            def drain_one():
                nonlocal written
                buf = pending.pop(0).result()
                f.write(buf)
                written += len(buf)
                progress.add(len(buf))

            for s, i in jobs:
                pending.append(pool.submit(gen_slice, seed, s, i))
                if len(pending) >= window:
                    drain_one()
            while pending:
                drain_one()
            assert written == data_len, (written, data_len)
            f.flush()
            os.fsync(f.fileno())
        assert os.path.getsize(tmp) == len(header) + data_len
        os.replace(tmp, path)
    except BaseException:
        for fut in pending:
            fut.cancel()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds through the cleanup handlers


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="output directory (created if missing)")
    ap.add_argument("--layers", type=int, default=N_LAYERS, help=f"num_hidden_layers (default {N_LAYERS})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", help="tokenizer.json to copy into the directory")
    ap.add_argument("--max-shard-size", type=float, default=5e9,
                    help="bytes per shard at most (default 5e9 = HF's '5GB')")
    ap.add_argument("--threads", type=int, default=min(16, os.cpu_count() or 1))
    ap.add_argument("--real-token-ids", action="store_true",
                    help="bos/eos/pad = 0/0/0 as in the real Codestral config.json "
                         "(default 1/2/0, the tokenizer's <s> and </s>)")
    ap.add_argument("--dry-run", action="store_true", help="print the tensor table and totals; write nothing")
    args = ap.parse_args()
    if args.layers < 1:
        ap.error("--layers must be >= 1")

    specs = tensor_table(args.layers)
    shards = plan_shards(specs, int(args.max_shard_size))
    total_params = sum(s.numel for s in specs)
    total_bytes = sum(s.nbytes for s in specs)
    full = sum(s.numel for s in tensor_table(N_LAYERS))
    assert full == EXPECTED_PARAMS_64, full

    if args.dry_run:
        where = {s.name: fn for fn, sh in shards for s in sh}
        print(f"{'tensor':45s} {'shape':>22s} dtype {'params':>14s}  file")
        for s in specs:
            print(f"{s.name:45s} {str(list(s.shape)):>22s} BF16  {s.numel:14,d}  {where[s.name]}")
        for fn, sh in shards:
            print(f"{fn}: {len(sh)} tensors, {sum(s.nbytes for s in sh):,d} bytes of data")
        print(f"layers {args.layers}: total params {total_params:,d}, total bytes {total_bytes:,d} "
              f"({total_bytes / 1e9:.3f} GB), {len(shards)} file(s)")
        print(f"64-layer layout: {full:,d} params (expected {EXPECTED_PARAMS_64:,d})")
        return

    if not args.out:
        ap.error("--out is required (unless --dry-run)")
    os.makedirs(args.out, exist_ok=True)
    if args.tokenizer and not os.path.isfile(args.tokenizer):
        ap.error(f"--tokenizer {args.tokenizer}: no such file")

    signal.signal(signal.SIGTERM, _terminate)
    progress = Progress(total_bytes)
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=max(1, args.threads)) as pool:
        for fn, sh in shards:
            write_shard(os.path.join(args.out, fn), sh, args.seed, pool, 2 * max(1, args.threads), progress)
    progress.add(0, force=True)
    sys.stderr.write("\n")

    if len(shards) > 1:
        index = {
            "metadata": {"total_size": total_bytes},
            "weight_map": {s.name: fn for fn, sh in shards for s in sorted(sh, key=lambda s: s.name)},
        }
        index["weight_map"] = dict(sorted(index["weight_map"].items()))
        atomic_write_bytes(os.path.join(args.out, "model.safetensors.index.json"),
                           (json.dumps(index, indent=2) + "\n").encode())
    if args.tokenizer:
        tmp = os.path.join(args.out, f"tokenizer.json.tmp-{os.getpid()}")
        try:
            shutil.copyfile(args.tokenizer, tmp)
            os.replace(tmp, os.path.join(args.out, "tokenizer.json"))
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    cfg = json.dumps(codestral_config(args.layers, args.real_token_ids), indent=2) + "\n"
    assert '"time_step_limit": [\n    0.0,\n    Infinity\n  ]' in cfg
    atomic_write_bytes(os.path.join(args.out, "config.json"), cfg.encode())

    dt = time.time() - t0
    sys.stderr.write(f"write_checkpoint: {args.out}: {len(shards)} file(s), {total_params:,d} params, "
                     f"{total_bytes / 1e6:.1f} MB in {dt:.1f} s ({total_bytes / 1e6 / dt:.1f} MB/s)\n")


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # e.g. --dry-run | head
        sys.stderr.close()
    except KeyboardInterrupt:
        sys.stderr.write("\nwrite_checkpoint: interrupted; partial files removed\n")
        sys.exit(130)
