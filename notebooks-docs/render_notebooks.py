#!/usr/bin/env python3
"""Render the stored (executed) notebooks as pages of the HTML documentation:
notebooks-docs/NAME.ipynb -> notebooks-docs/html/notebooks/NAME.html. Run by `make docs`.

    build/venv-docs/bin/python notebooks-docs/render_notebooks.py notebooks-docs/*.ipynb

The notebooks are not executed here (`make notebooks` does that and stores their outputs). Their
Markdown links are rewritten as the guides' are (doxygen_filter.html_target: a guide becomes its
Doxygen page, another notebook its rendering, any other path points into the checkout), and MathJax
is the copy in html/mathjax/ (`make docs` puts it there), so the pages work offline. Widgets are
shown as their static output only.
"""
import pathlib
import re
import sys

import nbconvert
import nbformat

from doxygen_filter import HTML_DIR, html_target

OUT = HTML_DIR / "notebooks"
LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def rewrite_links(nb_path, source):
    """The Markdown of one cell with its relative links pointing where they lead in the HTML."""
    def one(m):
        target = m.group(2)
        if target.startswith("#") or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
            return m.group(0)
        new = html_target(nb_path, target, html_from=OUT)
        return m.group(1) + (new if new is not None else target) + m.group(3)
    return LINK.sub(one, source)


def main(paths):
    OUT.mkdir(parents=True, exist_ok=True)
    exporter = nbconvert.HTMLExporter(template_name="lab",
                                      mathjax_url="../mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe")
    for path in map(pathlib.Path, paths):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = rewrite_links(path.resolve(), cell.source)
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
        (OUT / f"{path.stem}.html").write_text(body, encoding="utf-8")
        print(f"rendered {path} -> {(OUT / (path.stem + '.html')).relative_to(HTML_DIR.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
