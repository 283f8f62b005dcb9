"""Models, their states, tokenizers and samplers: the C handles of include/mamba2.h as Python objects.

::

    with mamba2.Model("data/stdlib-mamba2", backend="cpu") as model:
        print(model.generate("def fibonacci(n):\\n    ", 32))
        state = mamba2.State(model)
        logits = model.prefill(model.tokenizer.encode("import os\\n"), state)   # [V] float32
        logits = model.step([state], [int(logits.argmax())])                   # [1, V]

Every object releases its C handle on ``close()``, at the end of a ``with`` block, or when it is
garbage-collected, in any order: a state keeps its model's memory alive in C.
"""
import contextlib
import ctypes
import json
import os
import struct
import tempfile

import numpy as np

from . import _library
from ._library import call, lib


class _Handle:
    """A C handle, released once: by close(), at the end of a with-block, or when garbage-collected."""

    _ptr = None  # the C pointer; None once released (or when __init__ failed)
    _release = None  # name of the C function that releases it

    @property
    def _handle(self):
        if not self._ptr:
            raise ValueError(f"this {type(self).__name__} is closed")
        return self._ptr

    def close(self):
        """Release the C object (a second call does nothing)."""
        ptr, self._ptr = self._ptr, None
        if ptr:
            getattr(lib(), self._release)(ptr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if _library is not None:  # not while the interpreter is shutting down and the module is gone
            self.close()


def _tokens(tokens):
    """Token ids as a 1-D int32 array; ids that do not fit in 32 bits are refused (they would wrap)."""
    ids = np.asarray(tokens)
    if ids.size == 0:
        return np.zeros(0, np.int32)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ValueError(f"token ids must be a 1-D sequence of integers, got {ids.dtype} of shape {ids.shape}")
    if ids.min() < -2**31 or ids.max() >= 2**31:
        raise ValueError("token ids must fit in 32 bits")
    return np.ascontiguousarray(ids, dtype=np.int32)


#: The hyper-parameters Model has as properties: the name (MAMBA2_DIM_<NAME> of include/mamba2.h in
#: lower case), the selector of mamba2_model_dim(), and the meaning (notebooks-docs/design.md §2).
DIMS = {
    "vocab_size": (0, "V: rows of the embedding and of the logits."),
    "n_layer": (1, "L: layers."),
    "d_model": (2, "d: width of the residual stream."),
    "n_heads": (3, "H: SSD heads."),
    "head_dim": (4, "P: channels per head."),
    "d_state": (5, "N: state size of each head."),
    "n_groups": (6, "G: groups of B and C."),
    "d_conv": (7, "K: width of the causal convolution."),
    "d_inner": (8, "d_in = H·P."),
    "conv_dim": (9, "conv_dim = d_in + 2·G·N: channels of the convolution."),
    "d_in_proj": (10, "2·d_in + 2·G·N + H: outputs of in_proj."),
    "chunk_size": (11, "Q: chunk size of the chunked SSD in prefill."),
}


class Model(_Handle):
    """A checkpoint directory, opened with a backend that runs it.

    Its hyper-parameters are read-only properties (``vocab_size``, ``n_layer``, ``d_model``, ...: DIMS).
    A Model runs one call at a time (its backend is not shared between threads: open one per
    thread); the C library releases the GIL while it runs, so other Python threads go on.

    Args:
        path: a checkpoint directory (Hugging Face's ``config.json`` + safetensors, or Mistral's
            ``params.json`` + ``consolidated.safetensors``).
        backend: ``"auto"`` (the first of gpu, cpu, ref that is built in and starts), ``"ref"``,
            ``"cpu"`` or ``"gpu"``.
        threads: cpu: OpenMP threads (0: ``OMP_NUM_THREADS``, else every core).
        weights: cpu: ``"stored"`` (as in the checkpoint), ``"q8"`` or ``"q4"`` (quantized at load).
        precision: cpu: ``"default"`` (within 1e-3 of ref) or ``"fast"`` (activations rounded to bf16).
        gpu_state_bf16: gpu: keep the SSM states in bf16 on the device.
        progress: called as ``progress(done, total, what)`` during long set-up (quantizing, uploading).

    Raises:
        FileError: ``path`` is not a readable directory.
        FormatError: what is in it is not a valid checkpoint.
        ArgumentError, BackendError: an unknown option, or a backend that is not built in or cannot start.
    """

    _release = "mamba2_model_close"

    def __init__(self, path, backend="auto", *, threads=0, weights="stored", precision="default",
                 gpu_state_bf16=False, progress=None):
        self._backend = None
        self._tokenizer = None
        self._ptr = call("mamba2_model_open", os.fsencode(path))
        options = _library.BackendOptions(n_threads=threads, weights=weights.encode(),
                                          precision=precision.encode(), gpu_state_bf16=int(gpu_state_bf16))
        guard = None
        if progress is not None:
            guard = _library.CallbackGuard(progress, _library.PROGRESS_FN,
                                           lambda f, ctx, done, total, what: f(done, total, what.decode()))
            options.progress = guard.c_function
        try:
            self._backend = call("mamba2_backend_open", self._ptr, backend.encode(), ctypes.byref(options))
            if guard is not None:
                guard.reraise()
        except BaseException:
            self.close()
            raise

    def close(self):
        """Release the backend, the tokenizer (if it was opened) and the model."""
        backend, self._backend = self._backend, None
        if backend:
            lib().mamba2_backend_close(backend)
        if self._tokenizer is not None:
            self._tokenizer.close()
        super().close()

    @property
    def n_params(self):
        """Number of parameters (lm_head counted unless it shares the embedding)."""
        return lib().mamba2_model_n_params(self._handle)

    @property
    def state_bytes(self):
        """Bytes of one sequence's state (conv + SSM, fp32); it does not grow with the sequence."""
        return lib().mamba2_model_state_bytes(self._handle)

    @property
    def path(self):
        """The checkpoint directory the model was opened from."""
        return os.fsdecode(lib().mamba2_model_dir(self._handle))

    @property
    def backend(self):
        """The backend that runs the model: ``"ref"``, ``"cpu"`` or ``"gpu"`` (what ``"auto"`` chose)."""
        return lib().mamba2_backend_name(self._backend_handle).decode()

    @property
    def _backend_handle(self):
        if not self._backend:
            raise ValueError("this Model is closed")
        return self._backend

    @property
    def tokenizer(self):
        """The tokenizer beside the checkpoint (opened on first use, closed with the model)."""
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self.path)
        return self._tokenizer

    def prefill(self, tokens, state=None, all_positions=False):
        """Run the tokens of one sequence.

        Args:
            tokens: [T] token ids, T ≥ 1.
            state: the State to continue, advanced by T tokens; None: a new sequence (a fresh state).
            all_positions: return the logits of every position instead of the last one's.

        Returns:
            float32 logits, [V] (the last position's) or [T, V].

        Raises:
            ArgumentError: T = 0, or a state of a model of another shape.
            TokenError: an id outside [0, V).
        """
        ids = _tokens(tokens)
        V = self.vocab_size
        logits = np.empty((len(ids), V) if all_positions else (V,), np.float32)
        with _state_or_new(self, state) as s:
            call("mamba2_prefill", self._backend_handle, s._handle, ids, len(ids), logits, int(all_positions))
        return logits

    def step(self, states, tokens):
        """Decode one token for each of B sequences at once (batched decode).

        Args:
            states: B distinct States, each advanced by one token.
            tokens: [B] the next token of each sequence.

        Returns:
            float32 logits [B, V].
        """
        ids = _tokens(tokens)
        if len(states) != len(ids):
            raise ValueError(f"{len(states)} states but {len(ids)} tokens")
        handles = (_library.StatePtr * len(ids))(*(s._handle for s in states))
        logits = np.empty((len(ids), self.vocab_size), np.float32)
        call("mamba2_step", self._backend_handle, handles, ids, len(ids), logits)
        return logits

    def prefill_observed(self, tokens, state=None, hook=None):
        """A prefill of every position that also shows each layer's tensors, to check one's own
        kernels layer by layer against the reference.

        The ref backend shows all nine tensors of every layer (``"input"``, ``"norm"``, ``"in_proj"``,
        ``"conv"``, ``"dt"``, ``"ssd"``, ``"gated_norm"``, ``"out_proj"``, ``"output"``: include/mamba2.h,
        ``mamba2_hook_tensor``), the cpu backend ``"input"`` and ``"output"``; the gpu backend none
        (BackendError).

        Args:
            tokens: [T] token ids.
            state: as for prefill().
            hook: None to collect the tensors, or a function called as ``hook(layer, name, array)``
                for each tensor as it comes (layers in order; ``array`` is a float32 [T, width] copy).
                An exception it raises is raised again once the prefill has finished.

        Returns:
            ``(logits, layers)``: float32 logits [T, V], and ``layers[l][name]``, the [T, width]
            arrays of layer l (None when a hook was given).
        """
        ids = _tokens(tokens)
        layers = None
        if hook is None:
            layers = [{} for _ in range(self.n_layer)]

            def hook(layer, name, array):
                layers[layer][name] = array

        def adapt(f, ctx, layer, tensor, data, T, width):
            name = lib().mamba2_hook_tensor_name(tensor).decode()
            f(layer, name, np.ctypeslib.as_array(data, shape=(T, width)).copy())

        guard = _library.CallbackGuard(hook, _library.LAYER_HOOK, adapt)
        logits = np.empty((len(ids), self.vocab_size), np.float32)
        with _state_or_new(self, state) as s:
            call("mamba2_prefill_observed", self._backend_handle, s._handle, ids, len(ids), logits,
                 guard.c_function, None)
        guard.reraise()
        return logits, layers

    def generate(self, prompt, n, *, temperature=0.0, top_k=0, top_p=1.0, seed=0, eos_id=None):
        """Continue a prompt by up to ``n`` tokens: a prefill, then one step per token.

        Args:
            prompt: text (encoded by the model's tokenizer, BOS first) or token ids.
            n: the most tokens to generate.
            temperature, top_k, top_p, seed: sampling, as Sampler (temperature 0: greedy).
            eos_id: the id that ends the generation (not returned); None: the tokenizer's
                end-of-sequence id when ``prompt`` is text, no end when it is ids.

        Returns:
            the continuation: text when ``prompt`` is text, else an int32 array of ids.
        """
        if n < 0:
            raise ValueError(f"n = {n}: cannot generate a negative number of tokens")
        text = isinstance(prompt, str)
        ids = self.tokenizer.encode(prompt) if text else prompt
        if eos_id is None and text:
            eos_id = self.tokenizer.eos_id
        out = []
        with State(self) as state, Sampler(self.vocab_size, temperature, top_k, top_p, seed) as sampler:
            logits = self.prefill(ids, state)
            while len(out) < n:
                token = sampler.sample(logits)
                if token == eos_id:
                    break
                out.append(token)
                if len(out) < n:
                    logits = self.step([state], [token])[0]
        return self.tokenizer.decode(out) if text else np.array(out, np.int32)


def _dim_property(which, doc):
    return property(lambda self: lib().mamba2_model_dim(self._handle, which), doc=doc)


for _name, (_which, _doc) in DIMS.items():
    setattr(Model, _name, _dim_property(_which, _doc))


class State(_Handle):
    """The recurrent state of one sequence: conv [L, conv_dim, K−1] and SSM [L, H, P, N], fp32.

    A new state is at the start of a sequence (zeros, position 0). It may move between backends
    (and models of the same shape), and be saved to a file and loaded back.

    Args:
        model: the Model whose shape it has.
    """

    _release = "mamba2_state_destroy"

    def __init__(self, model):
        self._ptr = call("mamba2_state_create", model._handle)

    @property
    def position(self):
        """Tokens this state has consumed since it was created or cleared."""
        return lib().mamba2_state_position(self._handle)

    def clear(self):
        """Return to the start of a sequence (zeros, position 0)."""
        lib().mamba2_state_clear(self._handle)

    def clone(self):
        """A new State equal to this one: the sequence so far, to be continued in two ways."""
        copy = State.__new__(State)
        copy._ptr = call("mamba2_state_clone", self._handle)
        return copy

    def save(self, path):
        """Write the state to a file (written to a temporary file and renamed: never half-written)."""
        call("mamba2_state_save_file", self._handle, os.fsencode(path))

    def arrays(self):
        """The state's numbers as numpy arrays (copies), to look at: ``(conv, ssm)``, float32
        ``conv`` [L, conv_dim, K−1] (the last K−1 inputs of each layer's causal convolution) and
        ``ssm`` [L, H, P, N] (each head's SSD state). Read from the state file format (version 2,
        model/state.c), written to a temporary file."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "state")
            self.save(path)
            with open(path, "rb") as f:
                data = f.read()
        magic, version, header = data[:8], *struct.unpack_from("<II", data, 8)
        if magic != b"MAMBA2ST" or version != 2:
            raise ValueError(f"unexpected state file (magic {magic!r}, version {version})")
        L, d_model, H, P, N, G, K, V = struct.unpack_from("<8q", data, 16)
        payload = struct.unpack_from("<Q", data, 96)[0]
        values = np.frombuffer(data, "<f4", count=payload // 4, offset=header)
        conv_dim = H * P + 2 * G * N
        n_conv = L * conv_dim * (K - 1)
        return (values[:n_conv].reshape(L, conv_dim, K - 1).copy(), values[n_conv:].reshape(L, H, P, N).copy())

    def load(self, path):
        """Replace this state by one saved with save(), by any backend or program.

        Raises:
            FileError: the file cannot be read.
            FormatError: it is not a state file, or belongs to a model of another shape (the state is unchanged).
        """
        call("mamba2_state_load_file", self._handle, os.fsencode(path))


def read_tensors(path, names=None):
    """Tensors of a safetensors checkpoint as float32 numpy arrays, to look at parameters the C
    library keeps to itself (e.g. each layer's ``A_log``: A = −exp(A_log)).

    Args:
        path: a ``.safetensors`` file, or a checkpoint directory (every ``*.safetensors`` in it).
        names: the tensor names to read (None: all).

    Returns:
        ``{name: array}`` with the stored shapes (F32, F16 and BF16 tensors).

    Raises:
        KeyError: a name that is in none of the files.
    """
    files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".safetensors")) \
        if os.path.isdir(path) else [path]
    wanted = None if names is None else set(names)
    out = {}
    for file in files:
        with open(file, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            base = 8 + n
            for name, info in header.items():
                if name == "__metadata__" or (wanted is not None and name not in wanted):
                    continue
                begin, end = info["data_offsets"]
                f.seek(base + begin)
                raw = f.read(end - begin)
                if info["dtype"] == "BF16":  # the upper 16 bits of a float32
                    array = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
                elif info["dtype"] in ("F16", "F32"):
                    array = np.frombuffer(raw, "<f2" if info["dtype"] == "F16" else "<f4").astype(np.float32)
                else:
                    raise ValueError(f"{name}: dtype {info['dtype']} is not read here")
                out[name] = array.reshape(info["shape"])
    missing = (wanted or set()) - set(out)
    if missing:
        raise KeyError(f"not in {path}: {', '.join(sorted(missing))}")
    return out


def _state_or_new(model, state):
    """A with-block over the caller's state, or over a fresh one released at its end."""
    return State(model) if state is None else contextlib.nullcontext(state)


class Tokenizer(_Handle):
    """Text ↔ token ids (Hugging Face's ``tokenizer.json``, or a SentencePiece model).

    Args:
        path: a checkpoint directory (its ``tokenizer.json``, else ``tokenizer.model.v3``, else
            ``tokenizer.model``) or a tokenizer file. ``Model.tokenizer`` opens the model's own.

    Raises:
        FileError: ``path`` does not exist.
        FormatError: no tokenizer can be read from it.
    """

    _release = "mamba2_tokenizer_close"

    def __init__(self, path):
        self._ptr = call("mamba2_tokenizer_open", os.fsencode(path))

    @property
    def n_vocab(self):
        """Number of token ids (one past the largest); may be less than the model's vocab_size."""
        return lib().mamba2_tokenizer_n_vocab(self._handle)

    @property
    def bos_id(self):
        """The beginning-of-sequence id, or None when the tokenizer has none."""
        token = lib().mamba2_tokenizer_bos_id(self._handle)
        return None if token < 0 else token

    @property
    def eos_id(self):
        """The end-of-sequence id, or None when the tokenizer has none."""
        token = lib().mamba2_tokenizer_eos_id(self._handle)
        return None if token < 0 else token

    def encode(self, text, add_bos=True):
        """Token ids of ``text`` (str, or bytes of UTF-8) as an int32 array, as the reference library
        (``tokenizers`` or ``sentencepiece``) gives them; ``add_bos``: BOS in front."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        count = ctypes.c_size_t()
        call("mamba2_tokenize", self._handle, data, len(data), int(add_bos), None, 0, ctypes.byref(count))
        ids = np.empty(count.value, np.int32)
        call("mamba2_tokenize", self._handle, data, len(data), int(add_bos), ids, len(ids), ctypes.byref(count))
        return ids

    def decode(self, ids):
        """The text of token ids, as the reference library's default decode (special tokens skipped).

        Bytes that are not valid UTF-8 (a character cut between tokens) become U+FFFD.

        Raises:
            TokenError: an id outside [0, n_vocab).
        """
        ids = _tokens(ids)
        size = ctypes.c_size_t()
        call("mamba2_detokenize", self._handle, ids, len(ids), None, 0, ctypes.byref(size))
        text = ctypes.create_string_buffer(size.value + 1)
        call("mamba2_detokenize", self._handle, ids, len(ids), text, len(text), ctypes.byref(size))
        return text.raw[:size.value].decode("utf-8", "replace")


class Sampler(_Handle):
    """Chooses next tokens from logits: temperature, top-k, top-p, and a seeded random generator.

    Temperature 0 is greedy (the argmax). Otherwise: logits / temperature, softmax, keep the
    ``top_k`` most probable (0: all), then the smallest set whose probability reaches ``top_p``
    (1: all), and draw. The same seed draws the same tokens.

    Args:
        n_vocab: length of the logits (``Model.vocab_size``).

    Raises:
        ArgumentError: a setting out of range.
    """

    _release = "mamba2_sampler_destroy"

    def __init__(self, n_vocab, temperature=0.0, top_k=0, top_p=1.0, seed=0):
        self.n_vocab = n_vocab
        self._ptr = call("mamba2_sampler_create", n_vocab, temperature, top_k, top_p, seed)

    def sample(self, logits):
        """The next token id chosen from ``logits`` [n_vocab] (NaN counts as −∞)."""
        logits = np.ascontiguousarray(logits, dtype=np.float32)
        if logits.shape != (self.n_vocab,):
            raise ValueError(f"logits of shape {logits.shape}, this sampler takes ({self.n_vocab},)")
        return int(lib().mamba2_sample(self._handle, logits))
