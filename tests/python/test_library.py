"""What the package mirrors of include/mamba2.h (the two structs, the codes and selectors, the
version) checked against the header compiled by the C compiler, and how the package finds the library."""
import ctypes
import ctypes.util
import os
import subprocess

import pytest

import mamba2
from mamba2 import _library
from conftest import ROOT

# Prints "NAME VALUE" lines: the layout of the two structs and the enum values the package uses.
PROBE = r"""
#include <stddef.h>
#include <stdio.h>
#include "mamba2.h"
#define SHOW(name, value) printf("%s %lld\n", name, (long long)(value))
#define FIELD(type, field) SHOW(#type "." #field, offsetof(type, field))
int main(void) {
    SHOW("mamba2_error", sizeof(mamba2_error));
    FIELD(mamba2_error, code);
    FIELD(mamba2_error, message);
    SHOW("MAMBA2_ERROR_MESSAGE_SIZE", MAMBA2_ERROR_MESSAGE_SIZE);
    SHOW("mamba2_backend_options", sizeof(mamba2_backend_options));
    FIELD(mamba2_backend_options, n_threads);
    FIELD(mamba2_backend_options, weights);
    FIELD(mamba2_backend_options, precision);
    FIELD(mamba2_backend_options, gpu_state_bf16);
    FIELD(mamba2_backend_options, progress);
    FIELD(mamba2_backend_options, progress_ctx);
    SHOW("MAMBA2_ERR_ARGUMENT", MAMBA2_ERR_ARGUMENT);
    SHOW("MAMBA2_ERR_TOKEN", MAMBA2_ERR_TOKEN);
    SHOW("MAMBA2_ERR_IO", MAMBA2_ERR_IO);
    SHOW("MAMBA2_ERR_FORMAT", MAMBA2_ERR_FORMAT);
    SHOW("MAMBA2_ERR_BACKEND", MAMBA2_ERR_BACKEND);
    SHOW("MAMBA2_ERR_MEMORY", MAMBA2_ERR_MEMORY);
    SHOW("MAMBA2_DIM_VOCAB_SIZE", MAMBA2_DIM_VOCAB_SIZE);
    SHOW("MAMBA2_DIM_N_LAYER", MAMBA2_DIM_N_LAYER);
    SHOW("MAMBA2_DIM_D_MODEL", MAMBA2_DIM_D_MODEL);
    SHOW("MAMBA2_DIM_N_HEADS", MAMBA2_DIM_N_HEADS);
    SHOW("MAMBA2_DIM_HEAD_DIM", MAMBA2_DIM_HEAD_DIM);
    SHOW("MAMBA2_DIM_D_STATE", MAMBA2_DIM_D_STATE);
    SHOW("MAMBA2_DIM_N_GROUPS", MAMBA2_DIM_N_GROUPS);
    SHOW("MAMBA2_DIM_D_CONV", MAMBA2_DIM_D_CONV);
    SHOW("MAMBA2_DIM_D_INNER", MAMBA2_DIM_D_INNER);
    SHOW("MAMBA2_DIM_CONV_DIM", MAMBA2_DIM_CONV_DIM);
    SHOW("MAMBA2_DIM_D_IN_PROJ", MAMBA2_DIM_D_IN_PROJ);
    SHOW("MAMBA2_DIM_CHUNK_SIZE", MAMBA2_DIM_CHUNK_SIZE);
    SHOW("MAMBA2_VERSION_MAJOR", MAMBA2_VERSION_MAJOR);
    SHOW("MAMBA2_VERSION_MINOR", MAMBA2_VERSION_MINOR);
    SHOW("MAMBA2_VERSION_PATCH", MAMBA2_VERSION_PATCH);
    return 0;
}
"""


@pytest.fixture(scope="module")
def header(tmp_path_factory):
    """The values PROBE prints, compiled against the repository's include/mamba2.h."""
    folder = tmp_path_factory.mktemp("probe")
    (folder / "probe.c").write_text(PROBE)
    subprocess.run([os.environ.get("CC", "cc"), "-std=c99", "-I", str(ROOT / "include"), "probe.c", "-o", "probe"],
                   cwd=folder, check=True)
    out = subprocess.run([str(folder / "probe")], capture_output=True, text=True, check=True).stdout
    return {name: int(value) for name, value in (line.split() for line in out.splitlines())}


def test_structs_match_the_header(header):
    for struct, name in ((_library.Error, "mamba2_error"), (_library.BackendOptions, "mamba2_backend_options")):
        assert ctypes.sizeof(struct) == header[name]
        assert [f for f, _ in struct._fields_] == [k.split(".")[1] for k in header if k.startswith(name + ".")]
        for field, _ in struct._fields_:
            assert getattr(struct, field).offset == header[f"{name}.{field}"], field
    assert _library.ERROR_MESSAGE_SIZE == header["MAMBA2_ERROR_MESSAGE_SIZE"]


def test_codes_and_selectors_match_the_header(header):
    for cls, name in ((mamba2.ArgumentError, "ARGUMENT"), (mamba2.TokenError, "TOKEN"), (mamba2.FileError, "IO"),
                      (mamba2.FormatError, "FORMAT"), (mamba2.BackendError, "BACKEND"),
                      (mamba2.OutOfMemoryError, "MEMORY")):
        assert cls.code == header[f"MAMBA2_ERR_{name}"]
    dims = {k[len("MAMBA2_DIM_"):].lower(): v for k, v in header.items() if k.startswith("MAMBA2_DIM_")}
    assert {name: which for name, (which, _) in mamba2.model.DIMS.items()} == dims


def test_version(header):
    major, minor, patch = (header[f"MAMBA2_VERSION_{p}"] for p in ("MAJOR", "MINOR", "PATCH"))
    assert mamba2.version() == f"{major}.{minor}.{patch}"  # the library loaded is the header's
    assert _library.API_VERSION == (major, minor)
    assert mamba2.__version__ == f"{major}.{minor}.{patch}"


def test_an_unknown_error_code_keeps_its_number():
    e = mamba2.errors.error_for(99, "a message")
    assert type(e) is mamba2.Mamba2Error and e.code == 99 and str(e) == "a message"


# ---- finding the library: each place on its own, the others switched off

@pytest.fixture
def nowhere(monkeypatch, tmp_path):
    """No MAMBA2_LIBRARY, an empty pkg-config path, no system library, no checkout."""
    monkeypatch.delenv("MAMBA2_LIBRARY", raising=False)
    monkeypatch.setenv("PKG_CONFIG_PATH", str(tmp_path))
    monkeypatch.setenv("PKG_CONFIG_LIBDIR", str(tmp_path))
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(_library, "checkout_root", lambda: None)
    return tmp_path


def _link_to_the_library(folder):
    """folder/libmamba2.so.MAJOR, a link to the library the tests use."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / _library.SONAME
    link.symlink_to(os.path.realpath(mamba2.library_path()))
    return str(link)


def test_nothing_found_names_every_place(nowhere):
    with pytest.raises(mamba2.LibraryError) as raised:
        _library.find_and_load()
    message = str(raised.value)
    for place in ("MAMBA2_LIBRARY: not set", "pkg-config: no mamba2.pc", 'find_library("mamba2"): None',
                  "the package is not in a checkout"):
        assert place in message


def test_environment_variable_first(nowhere, monkeypatch):
    path = _link_to_the_library(nowhere / "env")
    monkeypatch.setenv("MAMBA2_LIBRARY", path)
    assert _library.find_and_load()[1] == path
    monkeypatch.setenv("MAMBA2_LIBRARY", str(nowhere / "missing.so"))
    monkeypatch.setattr(_library, "checkout_root", lambda: ROOT)  # something else to find: not tried
    with pytest.raises(mamba2.LibraryError, match=f"MAMBA2_LIBRARY={nowhere / 'missing.so'}: .*No such file"):
        _library.find_and_load()


def test_pkg_config(nowhere):
    path = _link_to_the_library(nowhere / "prefix" / "lib")
    (nowhere / "mamba2.pc").write_text(f"prefix={nowhere / 'prefix'}\nlibdir=${{prefix}}/lib\n\nName: mamba2\n"
                                       "Description: test\nVersion: 0.1.0\nLibs: -L${libdir} -lmamba2\n")
    assert _library.find_and_load()[1] == path


def test_checkout(nowhere, monkeypatch):
    path = _link_to_the_library(nowhere / "repo" / "build" / "lib")
    monkeypatch.setattr(_library, "checkout_root", lambda: nowhere / "repo")
    assert _library.find_and_load()[1] == path


def test_wrong_version_is_refused(nowhere, monkeypatch):
    monkeypatch.setenv("MAMBA2_LIBRARY", _link_to_the_library(nowhere / "env"))
    monkeypatch.setattr(_library, "API_VERSION", (_library.API_VERSION[0] + 1, 0))
    with pytest.raises(mamba2.LibraryError, match=r"version \d+\.\d+\.\d+, this package needs"):
        _library.find_and_load()


def test_a_library_that_is_not_mamba2(nowhere, monkeypatch):
    monkeypatch.setenv("MAMBA2_LIBRARY", "libm.so.6")
    with pytest.raises(mamba2.LibraryError, match="undefined symbol: mamba2_version"):
        _library.find_and_load()
