#!/usr/bin/env python3
"""The side-by-side table of bench/llama_cpp_bench.sh: llama.cpp's llama-bench JSON and our
`mamba2 bench --json` from one run directory, as Markdown.

    python3 bench/llama_cpp_table.py RUN_DIR [--ggml-cpu-lib PATH] [--threads N] [--isa NAME]
                                     [--command TEXT] [--ours-env TEXT] [--gen-len M]

RUN_DIR holds lcpp-{BF16,Q8_0,Q4_0}-r<k>.json (llama-bench -o json: pp512 and tg16) and
ours-{stored,fast,q8,q4}-r<k>.json (mamba2 bench --json), k = 1, 2, ... Each round gives one
figure per side (llama-bench: the mean of its 3 repetitions; ours: the median of 3); the table
shows the median over rounds and the range [slowest, fastest]. The ISA line of llama.cpp is what
its CPU backend was compiled for, read from the ggml_cpu_has_* functions of --ggml-cpu-lib (the
flags of llama.cpp's own system_info line). Standard library only.
"""

import argparse
import ctypes
import json
import re
import statistics
import sys
from pathlib import Path

PAIRS = [  # llama.cpp format, our config, label
    ("BF16", "stored", "BF16 ↔ stored (default precision)"),
    ("BF16", "fast", "BF16 ↔ stored, --precision fast"),
    ("Q8_0", "q8", "Q8_0 ↔ --weights q8"),
    ("Q4_0", "q4", "Q4_0 ↔ --weights q4"),
]
GGML_FEATURES = ["sse3", "ssse3", "avx", "avx_vnni", "avx2", "bmi2", "f16c", "fma", "avx512", "avx512_vbmi",
                 "avx512_vnni", "avx512_bf16", "amx_int8"]


def cpu_model():
    fields = {}
    try:
        for line in open("/proc/cpuinfo"):
            k, _, v = line.partition(":")
            k = k.strip()
            if k in ("model name", "cpu family", "model", "stepping") and k not in fields:
                fields[k] = v.strip()
            if not line.strip() and fields:
                break
    except OSError:
        return "unknown CPU"
    flags = set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8") if f in flags]
    return "%s (family %s, model %s, stepping %s); flags: %s" % (
        fields.get("model name", "?"), fields.get("cpu family", "?"), fields.get("model", "?"),
        fields.get("stepping", "?"), " ".join(isa) or "no AVX2")


def ggml_features(lib_path):
    if not lib_path:
        return "not read (no --ggml-cpu-lib)"
    try:
        lib = ctypes.CDLL(lib_path)
    except OSError as e:
        return "not read (%s)" % e
    out = []
    for f in GGML_FEATURES:
        fn = getattr(lib, "ggml_cpu_has_" + f, None)
        if fn is not None:
            out.append("%s = %d" % (f.upper(), fn()))
    return " | ".join(out)


def rounds(run, prefix):
    """[(round number, path)] sorted by round."""
    got = []
    for p in run.glob(prefix + "-r*.json"):
        m = re.fullmatch(re.escape(prefix) + r"-r(\d+)\.json", p.name)
        if m:
            got.append((int(m.group(1)), p))
    return sorted(got)


def lcpp_figures(run, fmt):
    """{"pp": [tok/s per round], "tg": [...]}, and the first round's JSON entry (for the build)."""
    out, first = {"pp": [], "tg": []}, None
    for _, p in rounds(run, "lcpp-" + fmt):
        for t in json.loads(p.read_text()):
            first = first or t
            out["pp" if t["n_prompt"] else "tg"].append(t["avg_ts"])
    return out, first


def ours_figures(run, cfg):
    out, first = {"pp": [], "tg": [], "of_gemm": [], "of_read": []}, None
    for _, p in rounds(run, "ours-" + cfg):
        j = json.loads(p.read_text())
        first = first or j
        d = j["decode"][0]
        out["pp"].append(j["prefill"]["tok_s"])
        out["of_gemm"].append(j["prefill"].get("of_gemm", float("nan")))
        out["tg"].append(d["tok_s"])
        # each repetition against the read bandwidth measured just before it, where the run has it
        out["of_read"].append(d.get("of_read_paired", d.get("of_read", float("nan"))))
    return out, first


def fmt_range(v):
    if not v:
        return "–"
    if len(v) == 1:
        return "%.2f" % v[0]
    return "%.2f [%.2f, %.2f]" % (statistics.median(v), min(v), max(v))


def med(v):
    return statistics.median(v) if v else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--ggml-cpu-lib", default="")
    ap.add_argument("--threads", default="?")
    ap.add_argument("--isa", default="native")
    ap.add_argument("--command", default="")
    ap.add_argument("--ours-env", default="")
    ap.add_argument("--gen-len", default="16")
    a = ap.parse_args()

    lc = {f: lcpp_figures(a.run, f) for f in ("BF16", "Q8_0", "Q4_0")}
    us = {c: ours_figures(a.run, c) for c in ("stored", "fast", "q8", "q4")}
    missing = [f for f, (v, _) in lc.items() if not v["pp"]] + [c for c, (v, _) in us.items() if not v["pp"]]
    if missing:
        sys.exit("llama_cpp_table.py: %s: no measurements for %s" % (a.run, ", ".join(missing)))
    n_rounds = max(len(v["pp"]) for v, _ in list(lc.values()) + list(us.values()))

    lfirst = lc["BF16"][1]
    print("### Side by side with llama.cpp, every format (ISA=%s)\n" % a.isa)
    if a.command:
        print("    %s\n" % a.command)
    print("- CPU: %s" % cpu_model())
    pp, tg = us["stored"][1]["prefill"]["tokens"], a.gen_len
    print("- threads: %s on both sides; %d round(s), alternating; prefill = %d tokens (llama-bench pp%d), "
          "decode = batch 1, %s tokens (tg%s)" % (a.threads, n_rounds, pp, pp, tg, tg))
    print("- llama.cpp %s (%s), CPU backend compiled with: %s; Q4_0/Q8_0 repacked at load where llama.cpp "
          "does so (\"repack\": %s)" % (lfirst.get("build_commit", "?"), lfirst.get("backends", "?"),
                                        ggml_features(a.ggml_cpu_lib), str(lfirst.get("repack", "?")).lower()))
    groups = {}  # (GEMM, decode products) -> our configurations that ran them
    for c, (_, j) in us.items():
        groups.setdefault((j.get("cpu_gemm_kernel", "?"), j.get("cpu_gemv_isa", "?")), []).append(c)
    ours_isa = ["%s: GEMM %s, decode products %s" % ("/".join(cs), g, v) for (g, v), cs in groups.items()]
    print("- ours%s: %s (the product each format runs for prefill is the one named after GEMM; q8/q4's GEMM "
          "ceiling is the one `mamba2 bench --roofline` measures for that format)"
          % (" with " + a.ours_env if a.ours_env else "", "; ".join(ours_isa)))
    print("- figures: tok/s, median over rounds [slowest, fastest round]; each round's figure is llama-bench's "
          "mean of 3 repetitions, ours the median of 3. \"of ceiling\": our rate as a fraction of the "
          "read bandwidth (decode) or GEMM rate (prefill) that `mamba2 bench --roofline` measured in the "
          "same run\n")

    print("| formats (llama.cpp ↔ ours) | phase | llama.cpp tok/s | ours tok/s | ours / llama.cpp | ours, of ceiling |")
    print("|---|---|---|---|---|---|")
    for lf, oc, label in PAIRS:
        lv, ov = lc[lf][0], us[oc][0]
        for phase, key, ceil, cname in (("prefill %d" % pp, "pp", "of_gemm", "GEMM"), ("decode b=1", "tg", "of_read", "read")):
            ratio = med(ov[key]) / med(lv[key])
            print("| %s | %s | %s | %s | %.2f | %.0f %% of %s |" % (
                label, phase, fmt_range(lv[key]), fmt_range(ov[key]), ratio, 100 * med(ov[ceil]), cname))

    print("\nDecode as multiples of the same side's unquantized decode (median over rounds):\n")
    print("| | llama.cpp | ours |")
    print("|---|---|---|")
    for lf, oc in (("Q8_0", "q8"), ("Q4_0", "q4")):
        print("| %s / %s ↔ %s / stored | %.2f × | %.2f × |" % (
            lf, "BF16", oc, med(lc[lf][0]["tg"]) / med(lc["BF16"][0]["tg"]),
            med(us[oc][0]["tg"]) / med(us["stored"][0]["tg"])))
    bw = [json.loads(p.read_text()).get("read_gbps") for c in us for _, p in rounds(a.run, "ours-" + c)]
    gemm = [json.loads(p.read_text()).get("gemm_gflops") for c in us for _, p in rounds(a.run, "ours-" + c)]
    bw, gemm = [x for x in bw if x], [x for x in gemm if x]
    if bw and gemm:
        print("\nCeilings measured by our runs (median of the runs' medians [lowest, highest]): read %.1f GB/s "
              "[%.1f, %.1f], GEMM %.1f GFLOP/s [%.1f, %.1f]." % (
                  statistics.median(bw), min(bw), max(bw), statistics.median(gemm), min(gemm), max(gemm)))


if __name__ == "__main__":
    main()
