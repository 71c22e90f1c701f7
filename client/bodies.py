"""How job bodies become bytes and back: raw bytes (default), text, msgpack, or your own.

A Serializer turns a Python value into bytes for put and bytes back into a value for
reserve/peek. Lengths on the wire are always those of the encoded bytes, so "café" in UTF-8
is announced as 5 bytes. Nothing is guessed: a str body with the default (bytes) serializer
is a TypeError, not silently encoded.
"""

from __future__ import annotations

import codecs
from typing import Any, Protocol, TypeVar

import msgpack  # type: ignore[import-untyped]

T = TypeVar("T")


class Serializer(Protocol[T]):
    """Turns job bodies into bytes and back. Implement both methods to plug in JSON, pickle,
    protobuf, ...: ``Client(addr, serializer=MySerializer())``."""

    def dumps(self, obj: T, /) -> bytes:
        """The bytes stored as the job body."""
        ...

    def loads(self, data: bytes, /) -> T:
        """The value a reserved or peeked job body stands for."""
        ...


class RawBytes:
    """The default: bodies are bytes in and bytes out (bytearray/memoryview accepted in)."""

    def dumps(self, obj: bytes, /) -> bytes:
        """The body itself (TypeError for anything but bytes-like)."""
        if isinstance(obj, bytes):
            return obj
        if isinstance(obj, bytearray | memoryview):
            return bytes(obj)
        raise TypeError(
            f"job body must be bytes, not {type(obj).__name__} "
            "(pass encoding='utf-8' for str bodies or a serializer for objects)"
        )

    def loads(self, data: bytes, /) -> bytes:
        """The body itself."""
        return data


class Text:
    """str bodies in the given encoding (``encoding="utf-8"``); bytes are accepted on put too."""

    def __init__(self, encoding: str = "utf-8", errors: str = "strict") -> None:
        codecs.lookup(encoding)  # LookupError now rather than at the first put
        self.encoding = encoding
        self.errors = errors

    def dumps(self, obj: str, /) -> bytes:
        """The encoded text (bytes pass through unchanged)."""
        if isinstance(obj, str):
            return obj.encode(self.encoding, self.errors)
        if isinstance(obj, bytes | bytearray | memoryview):
            return bytes(obj)
        raise TypeError(f"job body must be str, not {type(obj).__name__}")

    def loads(self, data: bytes, /) -> str:
        """The decoded text (UnicodeDecodeError becomes the client's DecodeError)."""
        return data.decode(self.encoding, self.errors)


class Msgpack:
    """Python values (None, bool, int, float, str, bytes, lists, dicts) as msgpack.

    str and bytes stay distinct (``use_bin_type``); tuples come back as lists.
    """

    def dumps(self, obj: Any, /) -> bytes:
        """The msgpack encoding of `obj` (TypeError for types msgpack cannot encode)."""
        data = msgpack.packb(obj, use_bin_type=True)
        assert isinstance(data, bytes)
        return data

    def loads(self, data: bytes, /) -> Any:
        """The value encoded in `data`."""
        return msgpack.unpackb(data, raw=False, strict_map_key=False)


def resolve(encoding: str | None, serializer: Serializer[Any] | str | None) -> Serializer[Any]:
    """The serializer a client uses for its constructor arguments `encoding`/`serializer`."""
    if serializer is not None and encoding is not None:
        raise ValueError("pass either encoding= or serializer=, not both")
    if isinstance(serializer, str):
        if serializer != "msgpack":
            raise ValueError(f"unknown serializer {serializer!r} (only 'msgpack' is built in)")
        return Msgpack()
    if serializer is not None:
        if not callable(getattr(serializer, "dumps", None)) or not callable(
            getattr(serializer, "loads", None)
        ):
            raise TypeError("a serializer needs dumps(obj) -> bytes and loads(bytes) methods")
        return serializer
    if encoding is not None:
        return Text(encoding)
    return RawBytes()
