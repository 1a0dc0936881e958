"""Inputs of the featurize tests: the bundled protobufs, and a minimal protobuf encoder for
hand-built HLO modules.

Field numbers as in XLA's hlo.proto / xla_data.proto. Only what the tests need: varints
(negative int64 as 10 bytes), length-delimited fields, packed or unpacked repeated integers.
"""

from __future__ import annotations

from tpulearn.data import sample_root

SAMPLE = sample_root()
LAYOUT_PB = SAMPLE / "pb" / "module_tuning_data_layout.pb"
TILE_PB = SAMPLE / "pb" / "op_tuning_data.pb"
LAYOUT_NPZ = SAMPLE / "npz" / "layout" / "xla" / "default" / "valid" / "unet_3d.4x4.bf16.npz"

F32, BF16, S32, PRED, TUPLE = 11, 16, 4, 1, 13


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def int_field(number: int, value: int) -> bytes:
    return tag(number, 0) + varint(value) if value else b""


def len_field(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def str_field(number: int, text: str) -> bytes:
    return len_field(number, text.encode()) if text else b""


def repeated_ints(number: int, values, packed: bool = True) -> bytes:
    values = list(values)
    if not values:
        return b""
    if packed:
        return len_field(number, b"".join(varint(v) for v in values))
    return b"".join(tag(number, 0) + varint(v) for v in values)


def shape(dims=(), element_type=F32, minor_to_major=None, tuple_shapes=(), packed=True) -> bytes:
    out = int_field(2, element_type) + repeated_ints(3, dims, packed)
    out += b"".join(len_field(4, s) for s in tuple_shapes)
    if minor_to_major is None:
        minor_to_major = list(range(len(dims) - 1, -1, -1))
    out += len_field(5, repeated_ints(1, minor_to_major, packed))
    return out


def instruction(
    id: int,
    opcode: str,
    dims=(),
    element_type=F32,
    operands=(),
    called=(),
    name: str | None = None,
    packed: bool = True,
    extra: bytes = b"",
    **shape_kwargs,
) -> bytes:
    out = str_field(1, name or f"{opcode}.{id & 0xFFFFFFFF}") + str_field(2, opcode)
    out += len_field(3, shape(dims, element_type, packed=packed, **shape_kwargs))
    out += int_field(35, id)
    out += repeated_ints(36, operands, packed) + repeated_ints(38, called, packed)
    return out + extra


def computation(id: int, name: str, instructions, root_id: int) -> bytes:
    out = str_field(1, name) + b"".join(len_field(2, i) for i in instructions)
    return out + int_field(5, id) + int_field(6, root_id)


def module(name: str, computations, entry_id: int) -> bytes:
    out = str_field(1, name) + str_field(2, name)
    out += b"".join(len_field(3, c) for c in computations)
    return out + int_field(6, entry_id)


def small_module(packed: bool = True) -> bytes:
    """A fused add, a dot, a reshape inside and outside the fusion, 64-bit sparse ids.

    Computations (proto order, callees first): ``fused`` (param, param, reshape, add) called
    by a fusion; ``main`` (param, param, fusion, dot, reshape, tuple).
    """
    hi = 7 << 32  # 64-bit ids, as current XLA numbers them (computation id in the high half)
    fused = computation(
        3,
        "fused_computation",
        [
            instruction(hi + 1, "parameter", (4, 8), packed=packed),
            instruction(hi + 2, "parameter", (4, 8), packed=packed),
            instruction(hi + 3, "reshape", (32,), operands=[hi + 2], packed=packed),
            instruction(hi + 4, "add", (4, 8), operands=[hi + 1, hi + 1], packed=packed),
        ],
        root_id=hi + 4,
    )
    main = computation(
        9,
        "main.9",
        [
            instruction(901, "parameter", (4, 8), packed=packed, extra=int_field(9, 0)),
            instruction(905, "parameter", (8, 16), packed=packed, extra=int_field(9, 1)),
            instruction(910, "fusion", (4, 8), operands=[901, 901], called=[3], packed=packed),
            instruction(920, "dot", (4, 16), operands=[910, 905], packed=packed),
            instruction(930, "reshape", (64,), operands=[920], packed=packed),
            instruction(940, "tuple", (), element_type=TUPLE, operands=[930, 920], packed=packed),
        ],
        root_id=940,
    )
    return module("small", [fused, main], entry_id=9)
