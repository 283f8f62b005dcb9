#!/usr/bin/env python3
"""Check executed notebooks: every notebook shows at least one figure, every code cell that draws one
(it calls save_figure(), show_figure() or plt.show()) has an image among its outputs, and no cell
ended in an error. Run by `make notebooks` after executing them; exits 1 with the reasons otherwise.

    python3 notebooks-docs/check_notebooks.py notebooks-docs/*.ipynb
    python3 notebooks-docs/check_notebooks.py --self-test     # shows that the check can fail
"""
import json
import re
import sys

DRAWS = re.compile(r"\b(save_figure|show_figure)\(|\bplt\.show\(")
IMAGE_TYPES = ("image/png", "image/svg+xml", "image/jpeg")


def images(cell):
    """Number of image outputs of a code cell."""
    return sum(any(t in out.get("data", {}) for t in IMAGE_TYPES) for out in cell.get("outputs", []))


def check(path, nb):
    """The problems of one executed notebook (a list of strings; empty when it passes) and its image count."""
    problems, total = [], 0
    for k, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        n = images(cell)
        total += n
        source = "".join(cell["source"])
        if DRAWS.search(source) and n == 0:
            problems.append(f"{path}: code cell {k + 1} draws a figure but has no image output")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"{path}: code cell {k + 1} raised {out.get('ename')}: {out.get('evalue')}")
    if total == 0:
        problems.append(f"{path}: no image output at all (not executed, or its figures are not shown)")
    return problems, total


def self_test():
    """A notebook whose drawing cell lost its image, and one without outputs, must both fail."""
    png = {"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo="}, "metadata": {}}
    good = {"cells": [{"cell_type": "code", "source": ["save_figure(fig, 'x')"], "outputs": [png]}]}
    lost = {"cells": [{"cell_type": "code", "source": ["save_figure(fig, 'x')"], "outputs": []},
                      {"cell_type": "code", "source": ["show_figure(f)"], "outputs": [png]}]}
    bare = {"cells": [{"cell_type": "code", "source": ["x = 1"], "outputs": []}]}
    ok = not check("good", good)[0] and len(check("lost", lost)[0]) == 1 and len(check("bare", bare)[0]) == 1
    print("check_notebooks self-test:", "passed" if ok else "FAILED")
    return 0 if ok else 1


def main(paths):
    if paths == ["--self-test"]:
        return self_test()
    failures = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            problems, total = check(path, json.load(f))
        print(f"{path}: {total} image output(s)")
        failures += problems
    for p in failures:
        print("FAILED:", p)
    return 1 if failures or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
