#!/usr/bin/env python3
"""Check every relative link of the guides and of the generated HTML: each must name a file or
directory that exists. Run by `make docs`; exits 1 and lists the broken links when there are any.

    python3 notebooks-docs/check_links.py --markdown README.md notebooks-docs/*.md notebooks-docs/*.ipynb
    python3 notebooks-docs/check_links.py --html notebooks-docs/html
    python3 notebooks-docs/check_links.py --self-test      # shows that the checker finds broken links

Markdown: the targets of [text](target) and ![alt](target), and of <a href>/<img src> written as
HTML, outside code blocks and code spans, resolved against the file's directory (the way a
code-hosting site resolves them); in a notebook, those of its Markdown cells. HTML: every href and
src attribute of every *.html file. Links with a scheme (https:, mailto:, ...) and links to an
anchor of the same page (#...) are not checked; a fragment or query after a path is ignored.
"""
import argparse
import html.parser
import json
import pathlib
import re
import sys
import tempfile
import urllib.parse

# [text](target) or ![alt](target "title"): the target runs to the first space or closing bracket
MD_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_ATTR = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")


def is_checked(target):
    """A relative link to a path: no scheme (https:, mailto:, data:), not only an anchor."""
    return bool(target) and not target.startswith("#") and not urllib.parse.urlsplit(target).scheme


def resolve(base_dir, target):
    """The path a relative link names, without its fragment and query, %-escapes decoded."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
    return (base_dir / path) if path else None


def markdown_targets(text):
    """The link targets of Markdown text, outside fenced code blocks and code spans."""
    in_fence = None
    for line in text.splitlines():
        fence = FENCE.match(line)
        if fence:
            in_fence = None if in_fence == fence.group(1) else (in_fence or fence.group(1))
            continue
        if in_fence or line.startswith("    ") and not line.lstrip().startswith(("-", "*", "|")):
            continue  # a fenced or indented code block
        line = CODE_SPAN.sub("", line)
        yield from MD_LINK.findall(line)
        yield from HTML_ATTR.findall(line)


def check_markdown(files):
    """Broken links of Markdown files and of notebooks' Markdown cells, as 'file: target' strings."""
    broken = []
    for f in map(pathlib.Path, files):
        if f.suffix == ".ipynb":
            cells = json.loads(f.read_text(encoding="utf-8"))["cells"]
            text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        else:
            text = f.read_text(encoding="utf-8")
        for target in markdown_targets(text):
            if is_checked(target):
                path = resolve(f.parent, target)
                if path is not None and not path.exists():
                    broken.append(f"{f}: {target}")
    return broken


class _Attributes(html.parser.HTMLParser):
    """Collects the href and src attributes of an HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.targets = []

    def handle_starttag(self, tag, attrs):
        self.targets += [value for name, value in attrs if name in ("href", "src") and value]


def check_html(root):
    """Broken href/src targets of every *.html file under root, as 'file: target' strings."""
    broken = []
    for page in sorted(pathlib.Path(root).rglob("*.html")):
        parser = _Attributes()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        for target in parser.targets:
            if is_checked(target):
                path = resolve(page.parent, target)
                if path is not None and not path.exists():
                    broken.append(f"{page}: {target}")
    return broken


def self_test():
    """Check a small tree with known good and broken links: the checker must report exactly the broken ones."""
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        (d / "fig.png").write_bytes(b"")
        (d / "sub").mkdir()
        (d / "sub" / "page.html").write_text(
            '<a href="../fig.png">ok</a> <img src="missing.png"> <a href="#top">anchor</a> '
            '<a href="https://example.org/x">external</a> <a href="../gone.html#x">broken</a>')
        (d / "guide.md").write_text(
            "[ok](fig.png) ![ok](fig.png \"title\") [anchor](#x) [web](https://example.org)\n"
            "[broken](nothere.md#part) `[in a span](nothere2.md)` <img src=\"gone.png\">\n"
            "```sh\n[in a block](nothere3.md)\n```\n")
        (d / "nb.ipynb").write_text(json.dumps({"cells": [
            {"cell_type": "markdown", "source": ["[ok](guide.md) [broken](../no/such.md)"]},
            {"cell_type": "code", "source": ["'[not a link](x.md)'"]}]}))
        md = sorted(b.split(": ", 1)[1] for b in check_markdown([d / "guide.md", d / "nb.ipynb"]))
        ht = sorted(b.split(": ", 1)[1] for b in check_html(d))
    expect_md, expect_ht = ["../no/such.md", "gone.png", "nothere.md#part"], ["../gone.html#x", "missing.png"]
    if md != expect_md or ht != expect_ht:
        print(f"check_links self-test FAILED: markdown {md} (expected {expect_md}), html {ht} (expected {expect_ht})")
        return 1
    print("check_links self-test: the broken links were found, the good ones passed")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", nargs="*", default=[], metavar="FILE", help="Markdown files and notebooks")
    ap.add_argument("--html", metavar="DIR", help="a directory of generated HTML")
    ap.add_argument("--self-test", action="store_true", help="check the checker on a tree of known links")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    broken = check_markdown(args.markdown) + (check_html(args.html) if args.html else [])
    for b in broken[:40]:
        print(f"broken link: {b}")
    if len(broken) > 40:
        print(f"... and {len(broken) - 40} more")
    checked = f"{len(args.markdown)} Markdown file(s)" + (f" and the HTML of {args.html}" if args.html else "")
    print(f"check_links: {checked}: {len(broken)} broken link(s)")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
