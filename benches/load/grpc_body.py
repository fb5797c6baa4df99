"""Write the request bodies of grpc_hit.sh: one single-row mlp infer as a
gRPC ModelInferRequest message (length-prefixed, raw_input_contents) and
as a binary-REST body (JSON header + raw bytes), with the same 16 floats.
Standard library only: the protobuf is encoded by hand.

usage: grpc_body.py OUT_DIR   (writes grpc.bin, rest.bin, rest.header_len)
"""
import json
import pathlib
import struct
import sys


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def main(out):
    row = struct.pack("<16f", *[i / 8 - 1 for i in range(1, 17)])
    shape = varint(1) + varint(16)
    tensor = field(1, b"x") + field(2, b"FP32") + field(3, shape)
    message = field(1, b"mlp") + field(5, tensor) + field(7, row)
    (out / "grpc.bin").write_bytes(b"\0" + struct.pack(">I", len(message)) + message)
    header = json.dumps({
        "inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "parameters": {"binary_data_size": 64}}],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    }, separators=(",", ":")).encode()
    (out / "rest.bin").write_bytes(header + row)
    (out / "rest.header_len").write_text(str(len(header)))


main(pathlib.Path(sys.argv[1]))
