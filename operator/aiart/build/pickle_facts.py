"""What a scikit-learn pickle needs, read from its bytes without running it.

Unpickling executes code and only works under the library versions that wrote
the file, so the operator must know those versions *before* it picks a runtime
image. scikit-learn stores ``_sklearn_version`` in every estimator's state,
and numpy 2 pickles name ``numpy._core`` where numpy 1 names ``numpy.core``;
both are plain strings in the pickle stream. joblib files hold the same
stream with raw array bytes between opcodes, so we look for the strings
directly rather than walking the opcodes. Pure: no I/O.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from dataclasses import dataclass

_MARKER = b"_sklearn_version"
# Memo opcodes that may sit between a string and the next one.
_MEMOIZE, _BINPUT, _LONG_BINPUT = 0x94, ord("q"), ord("r")
_SHORT_BINUNICODE, _BINUNICODE, _SHORT_BINSTRING = 0x8C, ord("X"), ord("U")
_PROTO = 0x80
MAX_DECOMPRESSED = 2 * 1024**3


class NotAPickle(ValueError):
    """The bytes are neither a pickle nor a compressed joblib file."""


@dataclass(frozen=True, slots=True)
class PickleFacts:
    sklearn_version: str | None
    numpy_major: int | None
    compression: str | None


def _decompress(data: bytes) -> tuple[bytes, str | None]:
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data), "gzip"
    if data[:3] == b"BZh":
        return bz2.decompress(data), "bz2"
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data), "xz"
    if data[:1] == b"x" and len(data) > 1 and (data[0] * 256 + data[1]) % 31 == 0:
        # joblib's zlib files start with a zlib header, plus its own prefix in
        # older versions; try plain zlib first.
        try:
            return zlib.decompress(data), "zlib"
        except zlib.error:
            pass
    if data.startswith(b"ZF"):  # joblib < 0.10 "ZF" + length + zlib stream
        return zlib.decompress(data[2 + 8:]) if len(data) > 10 else b"", "zlib"
    return data, None


def _string_at(data: bytes, pos: int) -> str | None:
    """Decode the string opcode at ``pos``, skipping memo opcodes first."""
    while pos < len(data):
        op = data[pos]
        if op == _MEMOIZE:
            pos += 1
        elif op == _BINPUT:
            pos += 2
        elif op == _LONG_BINPUT:
            pos += 5
        else:
            break
    if pos >= len(data):
        return None
    op = data[pos]
    try:
        if op in (_SHORT_BINUNICODE, _SHORT_BINSTRING):
            length = data[pos + 1]
            return data[pos + 2 : pos + 2 + length].decode("utf-8")
        if op == _BINUNICODE:
            (length,) = struct.unpack_from("<I", data, pos + 1)
            if length > 64:
                return None
            return data[pos + 5 : pos + 5 + length].decode("utf-8")
    except (IndexError, UnicodeDecodeError, struct.error):
        return None
    return None


def read_pickle_facts(data: bytes) -> PickleFacts:
    """Return the scikit-learn and numpy versions a pickle or joblib file needs."""
    try:
        raw, compression = _decompress(data)
    except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as exc:
        raise NotAPickle(f"the file looks compressed but does not decompress: {exc}") from None
    if not raw or raw[0] != _PROTO:
        if not raw.startswith((b"(", b"c", b"}", b"]")):
            raise NotAPickle(
                "the file is not a pickle or joblib file (no pickle header); "
                "save the model with pickle.dump or joblib.dump"
            )
    sklearn_version: str | None = None
    pos = raw.find(_MARKER)
    while pos != -1 and sklearn_version is None:
        sklearn_version = _string_at(raw, pos + len(_MARKER))
        pos = raw.find(_MARKER, pos + 1)
    numpy_major: int | None = None
    if b"numpy._core" in raw:
        numpy_major = 2
    elif b"numpy.core" in raw:
        numpy_major = 1
    return PickleFacts(sklearn_version, numpy_major, compression)
