"""A small protobuf wire-format decoder driven by hand-written message schemas.

Longer than most modules: one idea, a bounds-checked decoder, whose reader, wire types
and error paths only make sense together.

No generated code and no protobuf dependency: a schema maps field numbers to a name and a
kind, and :func:`decode` turns the bytes of one message into a plain dict (missing fields
get their proto3 defaults, repeated fields are lists, unknown fields are skipped). All four
wire types in use are read (varint, 64-bit, length-delimited, 32-bit), packed and unpacked
repeated scalars are both accepted, and deprecated groups are skipped when unknown.

Every read is bounds-checked. Damaged or foreign input raises :class:`FeaturizeError`
naming the file, the field path (``module.computations[3].instructions[17].shape``), what
was expected and what was found, never an IndexError, a RecursionError or a hang: nesting
follows the schema, which is finite, and skipped groups are walked iteratively.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
_WIRE_NAMES = {
    VARINT: "varint",
    I64: "64-bit",
    LEN: "length-delimited",
    SGROUP: "start-group",
    EGROUP: "end-group",
    I32: "32-bit",
}
_MASK64 = (1 << 64) - 1
_MAX_GROUP_DEPTH = 64


class FeaturizeError(ValueError):
    """A protobuf or HLO module could not be featurized.

    The message names the file, the field, what was expected and what was found.
    """

    def __init__(self, path: str | Path | None, field: str | None, expected: str, found: str):
        self.path = "<bytes>" if path is None else str(path)
        self.field = field
        self.expected = expected
        self.found = found
        where = f"{self.path}: field '{field}'" if field else self.path
        super().__init__(f"{where}: expected {expected}, found {found}")


# Kinds and the wire type each is stored with (packed repeated scalars use LEN as well).
_SCALAR_WIRE = {
    "int64": VARINT,
    "uint64": VARINT,
    "int32": VARINT,
    "enum": VARINT,
    "bool": VARINT,
    "double": I64,
    "float": I32,
}
_LEN_KINDS = ("string", "bytes", "message", "count")
_DEFAULTS = {
    "int64": 0,
    "uint64": 0,
    "int32": 0,
    "enum": 0,
    "bool": False,
    "double": 0.0,
    "float": 0.0,
    "string": "",
    "bytes": b"",
}


@dataclass(frozen=True)
class Field:
    """One field of a message schema.

    ``kind`` is a scalar kind (``int64``, ``uint64``, ``int32``, ``enum``, ``bool``,
    ``double``, ``float``), ``string``, ``bytes``, ``message`` (with ``message`` set to the
    sub-schema) or ``count``: a repeated message that is only counted, never parsed. A
    singular message field with ``presence`` reads as None when absent (where "has the
    field" matters), otherwise as the default message.
    """

    name: str
    kind: str
    repeated: bool = False
    message: Schema | None = None
    presence: bool = False


@dataclass
class Schema:
    """A message type: its name (for error messages) and its fields by number."""

    name: str
    fields: dict[int, Field] = field(default_factory=dict)

    def default(self) -> dict:
        """The message with every field at its proto3 default."""
        out = {}
        for f in self.fields.values():
            if f.repeated:
                out[f.name] = 0 if f.kind == "count" else []
            elif f.kind == "message":
                out[f.name] = None if f.presence else f.message.default()
            else:
                out[f.name] = _DEFAULTS[f.kind]
        return out


class _Reader:
    """Bounds-checked primitive reads over one buffer; errors carry the field path."""

    def __init__(self, data: bytes, path: str | Path | None):
        self.data = data
        self.path = path

    def fail(self, where: str, expected: str, found: str):
        raise FeaturizeError(self.path, where, expected, found)

    def varint(self, pos: int, end: int, where: str) -> tuple[int, int]:
        data = self.data
        value = shift = 0
        start = pos
        while True:
            if pos >= end:
                self.fail(where, "a complete varint", f"the data ending at byte {start}")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value & _MASK64, pos
            shift += 7
            if shift >= 70:
                self.fail(where, "a varint of at most 10 bytes", f"a longer one at byte {start}")

    def fixed(self, pos: int, end: int, size: int, where: str) -> int:
        if pos + size > end:
            self.fail(where, f"{size} more bytes", f"{end - pos} at byte {pos}")
        return pos + size

    def length(self, pos: int, end: int, where: str) -> tuple[int, int]:
        """A length-delimited payload: ``(start, stop)`` of its bytes."""
        size, pos = self.varint(pos, end, where)
        if size > end - pos:
            self.fail(where, f"{size} bytes of payload", f"{end - pos} left at byte {pos}")
        return pos, pos + size

    def tag(self, pos: int, end: int, where: str) -> tuple[int, int, int]:
        key, pos = self.varint(pos, end, where)
        number, wire = key >> 3, key & 7
        if number == 0 or number >= 1 << 29:
            self.fail(where, "a field number in 1..2^29-1", f"{number} at byte {pos}")
        if wire not in _WIRE_NAMES:
            self.fail(where, "a wire type in 0..5", f"wire type {wire} at byte {pos}")
        return number, wire, pos

    def skip(self, number: int, wire: int, pos: int, end: int, where: str) -> int:
        """Skip one unknown field's value (groups iteratively, depth-limited)."""
        if wire == VARINT:
            return self.varint(pos, end, where)[1]
        if wire == I64:
            return self.fixed(pos, end, 8, where)
        if wire == I32:
            return self.fixed(pos, end, 4, where)
        if wire == LEN:
            return self.length(pos, end, where)[1]
        if wire == EGROUP:
            self.fail(where, "a field", f"an unmatched end-group of field {number}")
        open_groups = [number]
        while open_groups:
            if len(open_groups) > _MAX_GROUP_DEPTH:
                self.fail(where, f"groups nested at most {_MAX_GROUP_DEPTH} deep", "deeper")
            inner, inner_wire, pos = self.tag(pos, end, where)
            if inner_wire == SGROUP:
                open_groups.append(inner)
            elif inner_wire == EGROUP:
                if inner != open_groups.pop():
                    self.fail(where, "matching group ends", f"end of group {inner}")
            else:
                pos = self.skip(inner, inner_wire, pos, end, where)
        return pos


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _scalar(kind: str, raw: int) -> int | bool:
    if kind == "int64":
        return _signed64(raw)
    if kind in ("int32", "enum"):  # the low 32 bits, as protobuf reads them
        return ((raw + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    if kind == "bool":
        return raw != 0
    return raw  # uint64


def _packed(reader: _Reader, kind: str, start: int, stop: int, where: str) -> list:
    if kind == "double":
        if (stop - start) % 8:
            reader.fail(where, "a multiple of 8 bytes of packed doubles", f"{stop - start}")
        return list(struct.unpack_from(f"<{(stop - start) // 8}d", reader.data, start))
    if kind == "float":
        if (stop - start) % 4:
            reader.fail(where, "a multiple of 4 bytes of packed floats", f"{stop - start}")
        return list(struct.unpack_from(f"<{(stop - start) // 4}f", reader.data, start))
    out = []
    pos = start
    while pos < stop:
        raw, pos = reader.varint(pos, stop, where)
        out.append(_scalar(kind, raw))
    return out


def _decode(reader: _Reader, schema: Schema, start: int, stop: int, where: str) -> dict:
    msg = schema.default()
    fields = schema.fields
    seen: set[int] = set()
    pos = start
    while pos < stop:
        number, wire, pos = reader.tag(pos, stop, where or schema.name)
        f = fields.get(number)
        if f is None:
            pos = reader.skip(number, wire, pos, stop, where or schema.name)
            continue
        here = f"{where}.{f.name}" if where else f.name
        if f.repeated and f.kind not in _LEN_KINDS and wire == LEN:
            begin, pos = reader.length(pos, stop, here)
            msg[f.name].extend(_packed(reader, f.kind, begin, pos, here))
            continue
        expected = _SCALAR_WIRE.get(f.kind, LEN)
        if wire != expected:
            reader.fail(
                here,
                f"{_WIRE_NAMES[expected]} data ({f.kind} field {number} of {schema.name})",
                f"{_WIRE_NAMES[wire]} data",
            )
        if expected == VARINT:
            raw, pos = reader.varint(pos, stop, here)
            value = _scalar(f.kind, raw)
        elif expected == I64:
            end = reader.fixed(pos, stop, 8, here)
            value = struct.unpack_from("<d", reader.data, pos)[0]
            pos = end
        elif expected == I32:
            end = reader.fixed(pos, stop, 4, here)
            value = struct.unpack_from("<f", reader.data, pos)[0]
            pos = end
        else:
            begin, pos = reader.length(pos, stop, here)
            if f.kind == "count":
                msg[f.name] += 1
                continue
            if f.kind == "message":
                item = f"{here}[{len(msg[f.name])}]" if f.repeated else here
                value = _decode(reader, f.message, begin, pos, item)
            elif f.kind == "string":
                try:
                    value = bytes(reader.data[begin:pos]).decode("utf-8")
                except UnicodeDecodeError as exc:
                    reader.fail(here, "a UTF-8 string", f"invalid bytes ({exc.reason})")
            else:
                value = bytes(reader.data[begin:pos])
        if f.repeated:
            msg[f.name].append(value)
        elif f.kind == "message" and number in seen:
            # A singular message seen again merges into the first, as protobuf does.
            msg[f.name] = _merge(msg[f.name], value, f.message)
        else:
            msg[f.name] = value
        seen.add(number)
    return msg


def _merge(old: dict, new: dict, schema: Schema) -> dict:
    """Protobuf merge semantics for a singular message seen more than once."""
    default = schema.default()
    for f in schema.fields.values():
        if f.repeated:
            new[f.name] = old[f.name] + new[f.name]
        elif f.kind == "message":
            if old[f.name] is not None and new[f.name] is not None:
                new[f.name] = _merge(old[f.name], new[f.name], f.message)
            elif new[f.name] is None:
                new[f.name] = old[f.name]
        elif new[f.name] == default[f.name]:
            new[f.name] = old[f.name]
    return new


def decode(data: bytes, schema: Schema, path: str | Path | None = None, root: str = "") -> dict:
    """Decode the bytes of one message of type ``schema`` into a dict.

    Args:
        data: the serialized message.
        schema: its type.
        path: the file it came from (named in errors).
        root: the field path prefix used in errors (e.g. ``"module"``).

    Raises:
        FeaturizeError: the bytes are not a well-formed message of that type.
    """
    data = bytes(data)
    return _decode(_Reader(data, path), schema, 0, len(data), root)


def field_spans(data: bytes, path: str | Path | None = None) -> list[tuple[int, int, int, int]]:
    """``(field number, wire type, start, stop)`` of each top-level field of a message, in
    order: ``data[start:stop]`` is the whole field, tag included."""
    reader = _Reader(bytes(data), path)
    spans = []
    pos, end = 0, len(reader.data)
    while pos < end:
        number, wire, after_tag = reader.tag(pos, end, "")
        stop = reader.skip(number, wire, after_tag, end, "")
        spans.append((number, wire, pos, stop))
        pos = stop
    return spans
