"""The exceptions of the package: one class per error code of include/mamba2.h.

A C function that fails fills a ``mamba2_error`` with a code and a one-line message; the package raises
the class of that code with the C message as its text, unchanged::

    try:
        mamba2.Model("no/such/dir")
    except mamba2.FileError as e:
        print(e.code, e)        # 3 no/such/dir: No such file or directory

Each class also derives from the built-in exception that says the same thing (``ValueError``,
``OSError``, ...), so ``except ValueError`` catches a bad token id too.
"""


class Mamba2Error(Exception):
    """A call into the C library failed; ``str(e)`` is the library's message.

    Attributes:
        code: the ``mamba2_status`` code (``MAMBA2_ERR_*`` of include/mamba2.h).
    """

    code = None


class ArgumentError(Mamba2Error, ValueError):
    """MAMBA2_ERR_ARGUMENT: a size out of range (T < 1), an unknown option, a state of another model."""

    code = 1


class TokenError(Mamba2Error, ValueError):
    """MAMBA2_ERR_TOKEN: a token id outside [0, vocabulary size)."""

    code = 2


class FileError(Mamba2Error, OSError):
    """MAMBA2_ERR_IO: a file or directory that does not exist or cannot be read or written."""

    code = 3


class FormatError(Mamba2Error, ValueError):
    """MAMBA2_ERR_FORMAT: a file that is there but malformed (checkpoint, tokenizer, state file)."""

    code = 4


class BackendError(Mamba2Error, RuntimeError):
    """MAMBA2_ERR_BACKEND: a backend not built in, unable to start here (no GPU), or unable to do what was asked."""

    code = 5


class OutOfMemoryError(Mamba2Error, MemoryError):
    """MAMBA2_ERR_MEMORY: the host or the device ran out of memory."""

    code = 6


class LibraryError(OSError):
    """The C library (libmamba2.so) was not found, could not be loaded, or is of another major version."""


_BY_CODE = {cls.code: cls for cls in (ArgumentError, TokenError, FileError, FormatError, BackendError, OutOfMemoryError)}


def error_for(code, message):
    """The exception for a C error: the class of ``code`` (Mamba2Error for a code it does not know)."""
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    error = Mamba2Error(message)
    error.code = code
    return error
