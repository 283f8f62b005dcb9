#!/usr/bin/env python3
"""Doxygen's input filter for the Markdown pages (Doxyfile: FILTER_PATTERNS = *.md=...): the guides
are written in the Markdown a code-hosting site renders, and this turns them into Doxygen's dialect.

    python3 notebooks-docs/doxygen_filter.py FILE.md      # the filtered page on stdout
    python3 notebooks-docs/doxygen_filter.py --self-test  # filter known cases, exit 1 on a difference

What changes (outside code blocks and code spans, which pass unchanged):

- math: `$$ ... $$` (display, may span lines) becomes `\\f[ ... \\f]`, `$...$` (inline) becomes
  `\\f$...\\f$`. An inline `$` opens math only before a non-space and closes only after a non-space
  and before a non-digit (so "costs $5 and $6" stays text); `\\$` is a literal dollar.
- the page's title gets a label, `{#doc_<path>}` (e.g. doc_notebooks_docs_02_mamba2_layer), so that
  its HTML file name is known in advance (html_page()); README.md is the main page (index.html).
  A title that has its own `{#label}` keeps it. A page with two or more `##` sections gets `[TOC]`.
- relative links, resolved against the page's directory as a code-hosting site does:
  another Doxygen page (.md) stays as it is (Doxygen links it); a C/CUDA source or header that Doxygen
  documents (it has an @file comment) becomes `@ref path`, its file page (one Doxygen cannot find
  makes it warn, which fails the build); a notebook becomes its HTML rendering, notebooks/NAME.html (`make docs` writes it); any other
  path (data, scripts, directories) points into the checkout, ../../PATH from notebooks-docs/html/.
  Images are left alone (`make docs` copies figures/ into the HTML).
"""
import os.path
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent  # the repository root
HTML_DIR = ROOT / "notebooks-docs" / "html"
SOURCE_SUFFIXES = (".c", ".h", ".cu", ".cuh")  # Doxyfile FILE_PATTERNS
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+).+?\1")
LINK = re.compile(r"(?<!!)(\[(?:[^\[\]]|\[[^\]]*\])*\])\(([^)\s]+)\)")  # [text](target), not ![img](...)
TITLE = re.compile(r"^# (.*?)\s*(\{#[\w-]+\})?\s*$")


def page_label(md_path):
    """The label (and HTML file name, without .html) of a Markdown page: its title's own {#label}, else
    doc_ + its path with every non-alphanumeric character replaced by _; README.md is the main page."""
    rel = pathlib.Path(md_path).resolve().relative_to(ROOT).as_posix()
    if rel == "README.md":
        return "index"
    for line in pathlib.Path(md_path).read_text(encoding="utf-8").splitlines():
        title = TITLE.match(line)
        if title:
            if title.group(2):
                return title.group(2)[2:-1]  # the page's own {#label}
            break
    return "doc_" + re.sub(r"[^A-Za-z0-9]", "_", rel[:-3] if rel.endswith(".md") else rel)


def html_target(md_path, target, html_from=HTML_DIR):
    """Where a relative link `target` of the page md_path leads in the HTML, as a link from the
    directory html_from; None when Doxygen resolves it itself (another Markdown page or a source file
    it documents, from a Doxygen page). From a rendered notebook (html/notebooks/), a guide is its
    Doxygen page and a source file is in the checkout."""
    path_part, _, fragment = target.partition("#")
    repo_path = (pathlib.Path(md_path).resolve().parent / path_part).resolve()
    rel = repo_path.relative_to(ROOT).as_posix() if repo_path.is_relative_to(ROOT) else None
    if rel is None or not repo_path.exists():
        return target  # left as written: the link check reports it
    if repo_path.suffix == ".ipynb" and repo_path.parent == ROOT / "notebooks-docs":
        dest = HTML_DIR / "notebooks" / (repo_path.stem + ".html")
    elif repo_path.suffix == ".md" and html_from != HTML_DIR:
        dest = HTML_DIR / (page_label(repo_path) + ".html")  # from a rendered notebook to a guide
    elif repo_path.suffix == ".md" or (_documented_source(repo_path) and html_from == HTML_DIR):
        return None
    else:
        dest = repo_path  # into the checkout
    link = pathlib.Path(os.path.relpath(dest, html_from)).as_posix()
    return link + ("#" + fragment if fragment else "")


def _input_dirs():
    """The directories of the Doxyfile's INPUT (scanned without their subdirectories: RECURSIVE = NO)."""
    text = (ROOT / "notebooks-docs" / "Doxyfile").read_text().replace("\\\n", " ")
    value = re.search(r"^INPUT\s*=(.*)$", text, re.M).group(1)
    return {(ROOT / entry).resolve() for entry in value.split() if (ROOT / entry).is_dir()}


def _documented_source(path):
    """A C/CUDA file that has a Doxygen file page: it is in an INPUT directory and its comment has
    @file (Doxyfile: EXTRACT_ALL = NO)."""
    if path.suffix not in SOURCE_SUFFIXES or path.parent not in _input_dirs():
        return False
    text = path.read_text(encoding="utf-8", errors="replace")
    return "@file" in text or "\\file" in text


def convert_links(md_path, line):
    """Rewrite the relative links of one line (code spans already taken out) for Doxygen."""
    def one(m):
        text, target = m.group(1), m.group(2)
        if target.startswith("#") or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("@ref"):
            return m.group(0)
        new = html_target(md_path, target)
        if new is None:
            if pathlib.Path(target.partition("#")[0]).suffix != ".md":
                rel = (pathlib.Path(md_path).resolve().parent / target).resolve().relative_to(ROOT).as_posix()
                return f"{text}(@ref {rel})"
            return m.group(0)
        return f"{text}({new})"
    return LINK.sub(one, line)


def convert_math(line, in_display):
    """Turn $$ and $ delimiters of one line (code spans taken out) into Doxygen's; returns the
    line and whether a display formula is still open at its end."""
    out, i, n = [], 0, len(line)
    while i < n:
        c = line[i]
        if line.startswith(("\\f$", "\\f[", "\\f]"), i):  # already Doxygen's: unchanged
            out.append(line[i:i + 3])
            i += 3
        elif c == "\\" and i + 1 < n:
            out.append(line[i:i + 2])
            i += 2
        elif line.startswith("$$", i):
            out.append("\\f]" if in_display else "\\f[")
            in_display = not in_display
            i += 2
        elif c == "$" and not in_display:
            end = _inline_end(line, i)
            if end is None:
                out.append(c)
                i += 1
            else:
                out.append("\\f$" + line[i + 1:end] + "\\f$")
                i = end + 1
        else:
            out.append(c)
            i += 1
    return "".join(out), in_display


def _inline_end(line, start):
    """The index of the `$` that closes inline math opened at `start`, or None when it is not math."""
    if start + 1 >= len(line) or line[start + 1].isspace() or line[start + 1] == "$":
        return None
    j = start + 1
    while j < len(line):
        if line[j] == "\\":
            j += 2
            continue
        if line[j] == "$":
            if line[j - 1].isspace() or (j + 1 < len(line) and line[j + 1].isdigit()):
                return None
            return j
        j += 1
    return None


def filter_page(md_path, text):
    """The page in Doxygen's dialect (see the module's comment)."""
    out, in_fence, in_display, sections, titled = [], None, False, 0, False
    is_main = page_label(md_path) == "index"
    for line in text.split("\n"):
        fence = FENCE.match(line)
        if fence and not in_display:
            in_fence = None if in_fence == fence.group(1) else (in_fence or fence.group(1))
            out.append(line)
            continue
        if in_fence:
            out.append(line)
            continue
        if not titled and not is_main:
            title = TITLE.match(line)
            if title:
                titled = True
                out.append(f"# {title.group(1)} {title.group(2) or '{#' + page_label(md_path) + '}'}")
                continue
        sections += line.startswith("## ")
        # code spans pass unchanged: convert the text between them
        pieces, last = [], 0
        for span in CODE_SPAN.finditer(line):
            text_part, in_display = convert_math(line[last:span.start()], in_display)
            pieces += [text_part, span.group(0)]
            last = span.end()
        text_part, in_display = convert_math(line[last:], in_display)
        pieces.append(text_part)
        out.append(convert_links(md_path, "".join(pieces)))
    if sections >= 2 and not is_main and "[TOC]" not in text:
        for k, line in enumerate(out):  # after the title and the paragraph that follows it
            if k > 0 and line.strip() == "" and any(o.startswith("# ") for o in out[:k]) and out[k - 1].strip():
                if not out[k - 1].startswith("# "):
                    out[k:k] = ["", "[TOC]"]
                    break
    return "\n".join(out)


def self_test():
    """Filter a page of known cases (math, code, dollars that are not math, links); 0 when each comes out right."""
    page = ROOT / "notebooks-docs" / "02-mamba2-layer.md"  # any guide: the links resolve from its directory
    text = ("# Title\n\nInline $a_t = \\Delta_t A$, costs $5 and $6, `$HOME` and \\$ stay.\n\n$$\nL_{ij} \\tag{1}\n$$\n\n"
            "```sh\necho $PATH $x$\n```\n\n## One\n\n## Two\n\n"
            "[guide](01-ssd-from-scratch.md) [code](../ref/ssd.c) [nb](01-ssd-forms.ipynb) [data](../data) [web](https://x.org/a)\n")
    want = ("# Title {#doc_notebooks_docs_02_mamba2_layer}\n\nInline \\f$a_t = \\Delta_t A\\f$, costs $5 and $6, `$HOME` and \\$ stay.\n\n"
            "[TOC]\n\n\\f[\nL_{ij} \\tag{1}\n\\f]\n\n```sh\necho $PATH $x$\n```\n\n## One\n\n## Two\n\n"
            "[guide](01-ssd-from-scratch.md) [code](@ref ref/ssd.c) [nb](notebooks/01-ssd-forms.html) [data](../../data) "
            "[web](https://x.org/a)\n")
    got = filter_page(page, text)
    if got != want:
        print("doxygen_filter self-test FAILED; got:\n" + got)
        return 1
    print("doxygen_filter self-test: math, code, literal dollars, labels, [TOC] and links come out right")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    page = pathlib.Path(sys.argv[1])
    sys.stdout.write(filter_page(page, page.read_text(encoding="utf-8")))
