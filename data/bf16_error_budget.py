#!/usr/bin/env python3
"""How much of the GPU prefill's difference from the reference bf16 activations explain.

The GPU prefill multiplies bf16 operands: the normalised input u of in_proj, its output [z | xBC],
the conv output x/B/C fed to the tensor-core SSD, and the normalised SSD output fed to out_proj.
This script reruns the oracle's float64 numpy model (data/make_fixtures.py) with each of those
rounded to bf16, alone and together, and prints the relative L2 error of the logits (the worst
position and over all positions). tests/test_gpu.c cites these numbers for its bounds.

Usage: python3 data/bf16_error_budget.py [FIXTURE ...]   (default: every fixture)
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402


def bf16(a):
    """Round to bf16, nearest even, and back to float64."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def rounded_forward():
    """The oracle's np_forward with optional bf16 rounding points R (a set of names)."""
    src = open(mf.__file__).read()
    body = src[src.index("def np_forward"):src.index("def rel_l2")]
    body = body.replace("variant=None, stats=None):", "variant=None, stats=None, R=()):")
    edits = [
        ('u = np_rmsnorm(h, Wt[p + "norm.weight"], eps)', "u = bf16(u) if 'u' in R else u"),
        ("z = zxbcdt[:, :d_in]", None),
        ("xBC = np_silu(conv)", "xBC = bf16(xBC) if 'xbc' in R else xBC"),
    ]
    for anchor, extra in edits:
        assert anchor in body, anchor
        if extra:
            body = body.replace(anchor, anchor + "\n        " + extra)
    body = body.replace(
        "z = zxbcdt[:, :d_in]",
        "w = d_in + conv_dim\n        if 'zx' in R:\n            zxbcdt = np.concatenate([bf16(zxbcdt[:, :w]), zxbcdt[:, w:]], axis=1)\n"
        "        z = zxbcdt[:, :d_in]")
    body = body.replace("h = h + y @ Wt", "y = bf16(y) if 'yn' in R else y\n        h = h + y @ Wt")
    ns = dict(mf.__dict__)
    ns["bf16"] = bf16
    exec(body, ns)
    return ns["np_forward"]


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
    names = sys.argv[1:] or sorted(n for n in os.listdir(root) if os.path.exists(os.path.join(root, n, "fixture.json")))
    fwd = rounded_forward()
    print(f"{'fixture':30s} {'rounded to bf16':22s} {'worst position':>15s} {'all positions':>14s}")
    for name in names:
        d = os.path.join(root, name)
        fj = json.load(open(os.path.join(d, "fixture.json")))
        Wt = {k: a.astype(np.float64) for k, (a, _) in mf.read_checkpoint(d)[0].items()}
        lim = [float("inf") if isinstance(v, (dict, str)) else float(v) for v in fj["time_step_limit"]]
        fx = dict(fj["shape"], dt_limit=lim)
        ref = fwd(fx, Wt, fj["tokens"])
        for R in (("u",), ("zx",), ("xbc",), ("yn",), ("u", "zx", "xbc", "yn")):
            got = fwd(fx, Wt, fj["tokens"], R=R)
            worst = max(np.linalg.norm(got[t] - ref[t]) / np.linalg.norm(ref[t]) for t in range(len(ref)))
            print(f"{name:30s} {'+'.join(R):22s} {worst:15.2e} {np.linalg.norm(got - ref) / np.linalg.norm(ref):14.2e}")


if __name__ == "__main__":
    main()
