#!/usr/bin/env python3
"""The table and the figure of bench/paper_throughput.sh's measurements (the paper's memory-capped
throughput figure, with this engine's numbers), without plotting libraries.

    python3 bench/paper_throughput_plot.py paper_throughput.tsv OUT.svg > table.md

The table: per cap and generated length, each engine's batch and tokens/s, and this engine's
throughput over the Transformer's (llama.cpp). The figure: tokens/s against generated length (log
axes), one panel per cap, one line per engine.
"""
import collections
import csv
import math
import sys

COLORS = {"mamba2-fp32": "#1f77b4", "mamba2-bf16": "#2ca02c", "llama.cpp": "#d62728", "transformers": "#ff7f0e"}
LABELS = {"mamba2-fp32": "this engine, Mamba-2 7B, fp32 state", "mamba2-bf16": "this engine, Mamba-2 7B, bf16 state",
          "llama.cpp": "llama.cpp CUDA, Transformer 7B (Qwen2.5 shape), flash attention",
          "transformers": "transformers, Transformer 7B, SDPA + static cache"}


def load(path):
    rows = collections.defaultdict(dict)  # (engine, cap) -> gen_len -> row
    for r in csv.DictReader(open(path), delimiter="\t"):
        if r["tok_s"] and float(r["tok_s"]) > 0:
            rows[(r["engine"], int(float(r["cap_gb"])))][int(r["gen_len"])] = r
    return rows


def table(rows):
    caps = sorted({c for _, c in rows})
    lens = sorted({n for v in rows.values() for n in v})
    out = []
    for cap in caps:
        out.append(f"\n**{cap} GB cap**: tokens/s (batch)\n")
        out.append("| engine | " + " | ".join(f"{n:,}" for n in lens) + " |")
        out.append("|---|" + "---|" * len(lens))
        for eng in COLORS:
            v = rows.get((eng, cap))
            if not v:
                continue
            cells = [f"{float(v[n]['tok_s']):,.0f} ({v[n]['batch']})" + (" ⚠" if "over" in v[n]["note"] else "")
                     if n in v else "–" for n in lens]
            out.append(f"| {eng} | " + " | ".join(cells) + " |")
        t = rows.get(("llama.cpp", cap), {})
        for eng in ("mamba2-fp32", "mamba2-bf16"):
            m = rows.get((eng, cap), {})
            cells = [f"**{float(m[n]['tok_s']) / float(t[n]['tok_s']):.2f}×**" if n in m and n in t else "–" for n in lens]
            out.append(f"| {eng} / llama.cpp | " + " | ".join(cells) + " |")
    return "\n".join(out)


def svg(rows, path):
    caps = sorted({c for _, c in rows})
    lens = sorted({n for v in rows.values() for n in v})
    vals = [float(r["tok_s"]) for v in rows.values() for r in v.values()]
    W, H, ml, mr, mt, mb = 460, 340, 70, 20, 40, 60
    ylo, yhi = 10 ** math.floor(math.log10(min(vals))), 10 ** math.ceil(math.log10(max(vals)))
    xlo, xhi = math.log2(lens[0]), math.log2(lens[-1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(caps)}" height="{H + 110}" '
             'font-family="sans-serif" font-size="12">', '<rect width="100%" height="100%" fill="white"/>']
    for k, cap in enumerate(caps):
        x0 = k * W

        def X(n):
            return x0 + ml + (math.log2(n) - xlo) / max(xhi - xlo, 1e-9) * (W - ml - mr)

        def Y(v):
            return mt + (math.log10(yhi) - math.log10(v)) / (math.log10(yhi) - math.log10(ylo)) * (H - mt - mb)

        parts.append(f'<text x="{x0 + W / 2}" y="20" text-anchor="middle" font-weight="bold">{cap} GB of GPU memory</text>')
        parts.append(f'<rect x="{x0 + ml}" y="{mt}" width="{W - ml - mr}" height="{H - mt - mb}" fill="none" stroke="#888"/>')
        e = math.log10(ylo)
        while e <= math.log10(yhi) + 1e-9:
            v = 10 ** e
            parts.append(f'<line x1="{x0 + ml}" x2="{x0 + W - mr}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#eee"/>')
            parts.append(f'<text x="{x0 + ml - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
            e += 1
        for n in lens:
            parts.append(f'<text x="{X(n):.1f}" y="{H - mb + 16}" text-anchor="middle">{n // 1024}k</text>')
        parts.append(f'<text x="{x0 + (ml + W - mr) / 2}" y="{H - mb + 34}" text-anchor="middle">generated tokens per sequence</text>')
        parts.append(f'<text transform="translate({x0 + 16},{(mt + H - mb) / 2}) rotate(-90)" text-anchor="middle">tokens/s (all sequences)</text>')
        for eng, color in COLORS.items():
            v = rows.get((eng, cap))
            if not v:
                continue
            pts = [(X(n), Y(float(v[n]["tok_s"]))) for n in sorted(v)]
            parts.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                         % (color, " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)))
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in pts]
    for i, (eng, color) in enumerate(COLORS.items()):
        if any(e == eng for e, _ in rows):
            y = H + 10 + 18 * i
            parts.append(f'<line x1="20" x2="44" y1="{y}" y2="{y}" stroke="{color}" stroke-width="2"/>')
            parts.append(f'<text x="50" y="{y + 4}">{LABELS[eng]}</text>')
    parts.append("</svg>")
    open(path, "w").write("\n".join(parts) + "\n")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = load(sys.argv[1])
    print(table(rows))
    svg(rows, sys.argv[2])


if __name__ == "__main__":
    main()
