"""Fixtures of the Python package's tests: the demo model of data/stdlib-mamba2 and its greedy fixture.

Run from the repository: ``python -m pytest tests/python`` with the package installed
(``pip install ./python``) and the library where it finds it (tests/python/run.sh does all of it).
"""
import json
import pathlib

import pytest

import mamba2

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "stdlib-mamba2"
#: The backends that run on this machine's CPU (the GPU one is tested by the C suites on the GPU machine).
CPU_BACKENDS = [b for b in mamba2.backends() if b != "gpu"]


@pytest.fixture(scope="session")
def greedy():
    """data/stdlib-mamba2/greedy.json: a prompt, its ids, and the 64-token greedy continuation of
    transformers (the same fixture as the C suite demo_model)."""
    return json.loads((DEMO / "greedy.json").read_text())


@pytest.fixture(scope="session")
def config():
    """The demo model's config.json."""
    return json.loads((DEMO / "config.json").read_text())


@pytest.fixture(scope="module", params=CPU_BACKENDS)
def model(request):
    """The demo model on each CPU-side backend, one thread (the model is small)."""
    with mamba2.Model(DEMO, backend=request.param, threads=1) as m:
        yield m


@pytest.fixture(scope="module")
def ref_model():
    """The demo model on the reference backend (the one that shows every tensor of a layer)."""
    with mamba2.Model(DEMO, backend="ref") as m:
        yield m
