"""liberasurecode through ctypes: the library pyeclib wraps, called without holding the GIL.

pyeclib's C extension holds the GIL through every encode and decode, so erasure coding runs on
one core however many threads ask; a `ctypes.CDLL` call lets go of the GIL for as long as the
foreign function runs, so chunks are coded beside their encryption, their tags and the event
loop. The library is the one pyeclib's wheel bundles (`pyeclib.libs/liberasurecode*.so*`, with
ISA-L beside it): same code, same arguments as pyeclib's `ECDriver(k, m, ec_type)` (w 0, hd m,
no checksum), so fragments are byte for byte pyeclib's. The prototypes match liberasurecode's
`include/erasurecode/erasurecode.h`. In memory only: no I/O.
"""

from __future__ import annotations

import contextlib
import ctypes
import struct
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from meterseal.errors import ConfigurationError, KvsError

# ec_backend_id_t (erasurecode.h)
BACKEND_IDS = {"isa_l_rs_vand": 4, "liberasurecode_rs_vand": 6}
CHKSUM_NONE = 1  # ec_checksum_type_t: pyeclib's default chksum_type "none"
HEADER_BYTES = 80  # sizeof(fragment_header_t): every fragment starts with one
METADATA_BYTES = 59  # sizeof(fragment_metadata_t), packed
MIN_VERSION = (1, 6, 0)  # the ec_args layout below is liberasurecode's since long before
# fragment_metadata_t's first fields (packed, in the host's byte order, as the library writes
# them): idx, size, backend metadata size, original data size; checked here so a forged header
# cannot send the library past the end of a fragment.
_META = struct.Struct("=IIIQ")

T = TypeVar("T")

_PTR = ctypes.c_void_p
_PTRS = ctypes.POINTER(ctypes.c_void_p)
_STRINGS = ctypes.POINTER(ctypes.c_char_p)  # fragments passed in: their bytes' own buffers


class _PrivArgs(ctypes.Union):
    """`ec_args.priv_args1`: its largest member is four uint64 (`reserved`)."""

    _fields_ = (("reserved", ctypes.c_uint64 * 4),)


class EcArgs(ctypes.Structure):
    """`struct ec_args` of erasurecode.h."""

    _fields_ = (
        ("k", ctypes.c_int),
        ("m", ctypes.c_int),
        ("w", ctypes.c_int),
        ("hd", ctypes.c_int),
        ("priv_args1", _PrivArgs),
        ("priv_args2", ctypes.c_void_p),
        ("ct", ctypes.c_int),
    )


def library_path() -> Path:
    """The liberasurecode that pyeclib's wheel bundles; ConfigurationError when there is none."""
    try:
        import pyeclib
    except ImportError as error:
        raise ConfigurationError(
            "erasure coding needs pyeclib: pip install 'meterseal[kvs]'"
        ) from error
    site = Path(pyeclib.__file__).resolve().parent.parent
    found = sorted(site.glob("pyeclib.libs/liberasurecode-*.so*"))
    if not found:
        raise ConfigurationError(f"pyeclib at {site} bundles no liberasurecode")
    return found[0]


def _bind(lib: Any) -> None:
    """Declare the prototypes used (erasurecode.h); AttributeError when a symbol is missing."""
    c_int, c_u64 = ctypes.c_int, ctypes.c_uint64
    out_ptrs, out_u64, strings = ctypes.POINTER(_PTRS), ctypes.POINTER(c_u64), _STRINGS
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "liberasurecode_get_version": (ctypes.c_uint32, []),
        "liberasurecode_backend_available": (c_int, [c_int]),
        "liberasurecode_instance_create": (c_int, [c_int, ctypes.POINTER(EcArgs)]),
        "liberasurecode_instance_destroy": (c_int, [c_int]),
        "liberasurecode_encode": (
            c_int,
            [c_int, _PTR, c_u64, out_ptrs, out_ptrs, out_u64],
        ),
        "liberasurecode_encode_cleanup": (c_int, [c_int, _PTRS, _PTRS]),
        "liberasurecode_decode": (
            c_int,
            [c_int, strings, c_int, c_u64, c_int, _PTRS, out_u64],
        ),
        "liberasurecode_decode_cleanup": (c_int, [c_int, _PTR]),
        "liberasurecode_reconstruct_fragment": (
            c_int,
            [c_int, strings, c_int, c_u64, c_int, _PTR],
        ),
        "liberasurecode_get_fragment_metadata": (c_int, [ctypes.c_char_p, _PTR]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes


# A new bytes object, uninitialized (the C API's PyBytes_FromStringAndSize(NULL, n)): filled
# by `_copied` before anything else can see it, as C code fills one.
_new_bytes = ctypes.pythonapi.PyBytes_FromStringAndSize
_new_bytes.restype, _new_bytes.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_ssize_t]


def _copied(address: int, size: int) -> bytes:
    """The `size` bytes at `address` as a new bytes object, copied without holding the GIL
    (`ctypes.memmove` lets go of it; `ctypes.string_at` would copy holding it)."""
    if size < 2:  # the empty and one-byte bytes objects may be shared: never written into
        return ctypes.string_at(address, size)
    out: bytes = _new_bytes(None, size)
    ctypes.memmove(ctypes.c_char_p(out), address, size)
    return out


_loaded: Any = None


def load(path: Path | None = None) -> Any:
    """The bound library (loaded once); ConfigurationError when it cannot be used."""
    global _loaded
    if _loaded is not None and path is None:
        return _loaded
    where = path or library_path()
    try:
        lib = ctypes.CDLL(str(where))
        _bind(lib)
    except (OSError, AttributeError) as error:
        raise ConfigurationError(f"liberasurecode at {where} cannot be used: {error}") from error
    version = lib.liberasurecode_get_version()
    found = (version >> 16, (version >> 8) & 0xFF, version & 0xFF)
    if found < MIN_VERSION:
        raise ConfigurationError(f"liberasurecode {found} at {where} is older than {MIN_VERSION}")
    if path is None:
        _loaded = lib
    return lib


class NativeCodec:
    """k + m erasure coding by liberasurecode's `backend`, every call free of the GIL."""

    def __init__(self, k: int, m: int, backend: str, lib: Any = None) -> None:
        self.k, self.m, self.backend = k, m, backend
        self.lib = lib if lib is not None else load()
        backend_id = BACKEND_IDS.get(backend)
        if backend_id is None or not self.lib.liberasurecode_backend_available(backend_id):
            raise ConfigurationError(f"liberasurecode has no backend {backend}")
        # pyeclib's ECDriver(k=k, m=m, ec_type=backend): w 0, hd m, no checksum, no local parity
        args = EcArgs(k=k, m=m, w=0, hd=m, ct=CHKSUM_NONE)
        self.desc = self.lib.liberasurecode_instance_create(backend_id, ctypes.byref(args))
        if self.desc <= 0:
            raise ConfigurationError(f"liberasurecode {backend} {k}+{m}: error {self.desc}")
        # The instance (the backend's tables, its registry entry) is the library's until
        # destroyed: destroyed once this codec is collected. The finalizer holds the function
        # and the descriptor, never the codec, so it does not keep the codec alive. No buffer
        # outlives the instance it is freed through: fragments are copied out and freed before
        # `encode` returns, and a decoded buffer's finalizer holds its codec (`decode_then`).
        self._destroy = weakref.finalize(self, self.lib.liberasurecode_instance_destroy, self.desc)
        # Not at exit: a daemon thread may still be coding then, and the process's end frees it.
        self._destroy.atexit = False

    def encode(self, data: bytes | memoryview) -> list[bytes]:
        """The k + m fragments of `data` (as pyeclib's `encode` gives them): bytes, or a
        writable view of one byte per item."""
        data_ptrs, parity_ptrs, length = _PTRS(), _PTRS(), ctypes.c_uint64()
        if isinstance(data, bytes):
            source: Any = ctypes.c_char_p(data)  # the bytes' own buffer: not copied
        else:
            source = (ctypes.c_char * data.nbytes).from_buffer(data)  # the view's memory
        ret = self.lib.liberasurecode_encode(
            self.desc,
            ctypes.cast(source, _PTR),
            len(data),
            ctypes.byref(data_ptrs),
            ctypes.byref(parity_ptrs),
            ctypes.byref(length),
        )
        if ret != 0:  # the library freed its buffers itself
            raise KvsError(f"erasure encoding failed: liberasurecode error {ret}")
        try:
            size = length.value
            return [_copied(data_ptrs[i], size) for i in range(self.k)] + [
                _copied(parity_ptrs[i], size) for i in range(self.m)
            ]
        finally:
            self.lib.liberasurecode_encode_cleanup(self.desc, data_ptrs, parity_ptrs)

    def decode(self, fragments: list[bytes]) -> bytes:
        """The data from at least k fragments (any order)."""
        return self.decode_then(fragments, bytes)

    def decode_then(self, fragments: list[bytes], then: Callable[[memoryview], T]) -> T:
        """`then` of the data from at least k fragments, a view of the library's own buffer
        (not copied): freed when `then` returns, or once the last view of it that `then` kept
        (a slice, or an object holding one) is gone; the view given is released."""
        try:
            size = self._check(fragments)
        except KvsError as error:
            raise KvsError(f"erasure decoding failed: {error}") from None
        array = (ctypes.c_char_p * len(fragments))(*fragments)
        out, length = _PTR(), ctypes.c_uint64()
        ret = self.lib.liberasurecode_decode(
            self.desc, array, len(fragments), size, 0, ctypes.byref(out), ctypes.byref(length)
        )
        if ret != 0:
            if out.value:
                self.lib.liberasurecode_decode_cleanup(self.desc, out)
            raise KvsError(f"erasure decoding failed: liberasurecode error {ret}")
        if out.value is None:
            return then(memoryview(b""))
        buffer = (ctypes.c_char * length.value).from_address(out.value)
        # Freed when the array mapping it goes: every view of it holds the array, so a view
        # kept past `then` keeps the buffer until it goes too (neither freed under it nor
        # leaked). The finalizer holds this codec, whose instance frees it, until then.
        weakref.finalize(buffer, self._free, out.value).atexit = False
        raw = memoryview(buffer)
        view = raw.cast("B")
        try:
            return then(view)
        finally:
            # Released, as the array's last reference here is dropped: unless `then` kept a
            # view, the buffer is freed now, though a traceback holds `then`'s frame and view
            with contextlib.suppress(BufferError):  # a view of it was exported: it holds it
                view.release()
            raw.release()
            del raw, view, buffer

    def _free(self, address: int) -> None:
        self.lib.liberasurecode_decode_cleanup(self.desc, _PTR(address))

    def reconstruct(self, fragments: list[bytes], index: int) -> bytes:
        """Fragment `index` rebuilt from at least k others."""
        size = self._check(fragments)
        if not 0 <= index < self.k + self.m:  # the library indexes its arrays with it unchecked
            raise KvsError(f"no fragment {index} in a {self.k}+{self.m} chunk")
        array = (ctypes.c_char_p * len(fragments))(*fragments)
        out = ctypes.create_string_buffer(size)
        ret = self.lib.liberasurecode_reconstruct_fragment(
            self.desc, array, len(fragments), size, index, ctypes.cast(out, _PTR)
        )
        if ret != 0:
            raise KvsError(f"erasure reconstruction failed: liberasurecode error {ret}")
        return out.raw

    def index(self, fragment: bytes) -> int:
        """The index a fragment's header names; KvsError when it is not a fragment."""
        self._check([fragment])
        meta = ctypes.create_string_buffer(64)
        ret = self.lib.liberasurecode_get_fragment_metadata(fragment, ctypes.cast(meta, _PTR))
        if ret != 0:
            raise KvsError(f"not a fragment: liberasurecode error {ret}")
        index: int = _META.unpack_from(meta.raw)[0]
        return index

    def _check(self, fragments: list[bytes]) -> int:
        return check_fragments(fragments, self.k, self.m)


def check_fragments(fragments: list[bytes], k: int, m: int) -> int:
    """Their common length; KvsError unless all are bytes of one length whose headers stay
    inside them (liberasurecode trusts the sizes a header gives, whichever binding calls it)."""
    if not fragments:
        raise KvsError("no fragments")
    size = len(fragments[0])
    for fragment in fragments:
        if type(fragment) is not bytes:
            raise KvsError(f"a fragment is bytes, not {type(fragment).__name__}")
        if len(fragment) != size or size < HEADER_BYTES:
            raise KvsError("fragments differ in length or are shorter than their header")
        index, payload, extra, original = _META.unpack_from(fragment)
        if index >= k + m or HEADER_BYTES + payload + extra > size or original > k * payload:
            raise KvsError(f"a fragment's header does not fit its {size} bytes")
    return size
