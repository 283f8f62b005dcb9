#!/usr/bin/env python3
"""The layout rules of the repository (issue #17), checked on the include graph; part of `make test`.

    python3 tests/check_layout.py [ROOT]      check the tree at ROOT (default: this repository)
    python3 tests/check_layout.py --self-test plant each violation in a synthetic tree, expect a failure

Rules:
 1. The library's own folders (ref/, model/, tokenizer/, src/) and the program (cli/) include no
    header of cpu/ or gpu/, except src/backend.c, the registry that calls the CPU and GPU
    constructors: everything else reaches a backend through src/backend.h. The library includes
    no header of the program (cli/) either.
 2. No include circles. A module is a .c/.cu file and the .h/.cuh of the same name in the same
    folder; module a depends on module b when a file of a includes b's header. A circle is a path
    of dependencies from a module back to itself (a -> b -> a, or longer).
 3. No two headers with the same name in folders on the include path: headers are included by
    basename (the Makefile passes one -I per folder), so a second one would be picked by -I order.

An #include "x.h" is resolved as the compiler does for quotes: the including file's folder first,
then the folders of the include path. Includes of files that are not in the repository (system and
library headers) are ignored. Exit status 0 when every rule holds, 1 with one line per violation.
"""
import os
import re
import sys
import tempfile

LIBRARY = ("ref", "model", "tokenizer", "src")   # the library
PATHS = ("cpu", "gpu")                           # the execution paths, reached through the backend interface
PROGRAM = ("cli",)                               # the command-line program, which the library does not use
RESTRICTED = LIBRARY + PROGRAM                   # folders that include no header of PATHS
INCLUDE_PATH = LIBRARY + PROGRAM + PATHS         # the Makefile's -I folders, in its order
ALLOWED = {"src/backend.c"}                      # the backend registry
SCANNED = INCLUDE_PATH + ("tests", "bench")      # where sources are read (folders and their subfolders)
SOURCE = (".c", ".h", ".cu", ".cuh")
HEADER = (".h", ".cuh")
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def sources(root):
    """Every source file under the scanned folders, as a path relative to root with '/' separators."""
    found = []
    for top in SCANNED:
        for folder, dirs, files in os.walk(os.path.join(root, top)):
            dirs.sort()
            for f in sorted(files):
                if f.endswith(SOURCE):
                    found.append(os.path.relpath(os.path.join(folder, f), root).replace(os.sep, "/"))
    return found


def resolve(root, files, includer, name):
    """The repository file that `#include "name"` in includer refers to, or None when it is not ours."""
    here = os.path.dirname(includer)
    candidate = os.path.normpath(os.path.join(here, name)).replace(os.sep, "/")
    if candidate in files:
        return candidate
    for folder in INCLUDE_PATH:
        candidate = os.path.normpath(os.path.join(folder, name)).replace(os.sep, "/")
        if candidate in files:
            return candidate
    return None


def module(path):
    """The module of a file: its path without the extension (ref/ssd.c and ref/ssd.h are ref/ssd)."""
    return os.path.splitext(path)[0]


def top_folder(path):
    return path.split("/", 1)[0]


def find_circles(edges):
    """The strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index, low, on_stack, stack, circles = {}, {}, set(), [], []

    def visit(v):  # recursive: the module graph is a few hundred nodes deep at most
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return circles


def cycle_through(edges, component):
    """One circle inside a strongly connected component, as a list of modules a -> b -> ... -> a."""
    inside = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:  # every module of the component has a successor inside it; walk until one repeats
        nxt = sorted(w for w in edges[path[-1]] if w in inside)[0]
        if nxt in seen:
            return path[path.index(nxt):] + [nxt]
        path.append(nxt)
        seen.add(nxt)


def check(root):
    """The list of violations in the tree at root (empty when it follows the rules)."""
    files = set(sources(root))
    problems = []

    headers = {}
    for f in sorted(files):
        if f.endswith(HEADER) and top_folder(f) in INCLUDE_PATH and f.count("/") == 1:
            headers.setdefault(os.path.basename(f), []).append(f)
    for name, where in sorted(headers.items()):
        if len(where) > 1:
            problems.append(f"header name clash: {' and '.join(where)} are both found as \"{name}\"")

    edges, why = {}, {}
    for f in sorted(files):
        with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        for match in INCLUDE.finditer(text):
            target = resolve(root, files, f, match.group(1))
            if target is None:
                continue
            line = text.count("\n", 0, match.start()) + 1
            if top_folder(f) in RESTRICTED and top_folder(target) in PATHS and f not in ALLOWED:
                problems.append(f"{f}:{line}: includes {target}: {', '.join(d + '/' for d in RESTRICTED)} reach "
                                f"{' and '.join(d + '/' for d in PATHS)} only through the backend interface (src/backend.h)")
            if top_folder(f) in LIBRARY and top_folder(target) in PROGRAM:
                problems.append(f"{f}:{line}: includes {target}: the library does not depend on the program")
            a, b = module(f), module(target)
            if a != b:
                edges.setdefault(a, set()).add(b)
                why.setdefault((a, b), f"{f}:{line}")
            edges.setdefault(b, set())

    for component in find_circles(edges):
        circle = cycle_through(edges, component)
        steps = ", ".join(f"{why[(a, b)]} includes {b}" for a, b in zip(circle, circle[1:]))
        problems.append(f"include circle: {' -> '.join(circle)} ({steps})")
    return problems


def self_test():
    """Plant every kind of violation in a small synthetic tree; the check must pass the clean tree and
    fail each planted one with the matching message."""
    clean = {
        "ref/ssd.h": "", "ref/ssd.c": '#include "ssd.h"\n',
        "ref/forward.h": '#include "state.h"\n', "ref/forward.c": '#include "forward.h"\n#include "ssd.h"\n',
        "model/state.h": "", "model/state.c": '#include "state.h"\n',
        "src/backend.h": '#include "forward.h"\n',
        "src/backend.c": '#include "backend.h"\n#include "blas_core.h"\n',  # the registry may
        "cpu/blas_core.h": "", "cpu/blas_core.c": '#include "blas_core.h"\n',
        "cpu/backend_cpu.h": '#include "backend.h"\n', "cpu/backend_cpu.c": '#include "backend_cpu.h"\n',
        "cli/main.c": '#include "backend.h"\n',
        "gpu/gpu.h": '#include "backend.h"\n',
        "tests/test_cpu.c": '#include "../cpu/backend_cpu.h"\n#include <stdio.h>\n#include "json-c/json.h"\n',
    }
    planted = {
        "ref/ includes a cpu/ header by basename": ({"ref/forward.c": '#include "backend_cpu.h"\n'},
                                                     "ref/forward.c:1: includes cpu/backend_cpu.h"),
        "model/ includes a gpu/ header by a relative path": ({"model/state.c": '#include "../gpu/gpu.h"\n'},
                                                             "model/state.c:1: includes gpu/gpu.h"),
        "src/ other than the registry includes cpu/": ({"src/error.c": '#include "backend_cpu.h"\n'},
                                                       "src/error.c:1: includes cpu/backend_cpu.h"),
        "cli/ includes a cpu/ header": ({"cli/main.c": '#include "backend.h"\n#include "blas_core.h"\n'},
                                        "cli/main.c:2: includes cpu/blas_core.h"),
        "the library includes a header of the program": ({"cli/cli.h": "", "model/state.c": '#include "cli.h"\n'},
                                                         "model/state.c:1: includes cli/cli.h"),
        "two modules include each other": ({"model/state.c": '#include "state.h"\n#include "forward.h"\n'},
                                           "include circle: model/state -> ref/forward -> model/state"),
        "a longer circle": ({"ref/ssd.c": '#include "ssd.h"\n#include "backend.h"\n'},
                            "include circle: ref/forward -> ref/ssd -> src/backend -> ref/forward"),
        "a header name on the include path twice": ({"cli/state.h": ""},
                                                    "header name clash: cli/state.h and model/state.h"),
    }
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        def write(tree, where):
            for path, text in tree.items():
                full = os.path.join(where, path)
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "w") as fh:
                    fh.write(text)

        base = os.path.join(tmp, "clean")
        write(clean, base)
        if check(base):
            failures.append(f"the clean tree fails: {check(base)}")
        for n, (what, (change, expected)) in enumerate(sorted(planted.items())):
            where = os.path.join(tmp, f"case{n}")
            write(dict(clean, **change), where)
            found = check(where)
            if not any(expected in p for p in found):
                failures.append(f"{what}: expected a line with '{expected}', got {found}")
    for f in failures:
        print("check_layout self-test:", f)
    print(f"check_layout self-test: {len(planted)} planted violations, "
          f"{len(planted) - len(failures)} caught" + ("" if not failures else ", FAILED"))
    return 1 if failures else 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    root = argv[1] if len(argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    problems = check(root)
    for p in problems:
        print("check_layout:", p)
    n = len(sources(root))
    print(f"check_layout: {n} files, {len(problems)} violations" if problems else
          f"check_layout: {n} files: no cpu/ or gpu/ header in the library or cli/, no cli/ header in the library, "
          f"no include circle, no header clash")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
