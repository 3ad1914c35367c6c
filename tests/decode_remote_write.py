#!/usr/bin/env python3
"""Decodes a remote-write body independently of the agent: snappy block format (cramjam) and
protobuf (Google's `protobuf` runtime), the message classes built at run time from
proto/remote.proto itself (a tiny parser for the proto3 subset used there; no protoc).

Usage: decode_remote_write.py BODY_FILE
Prints the WriteRequest as JSON:
  {"timeseries": [{"labels": [["__name__", "up"], ...],
                   "samples": [{"value": 1.0, "timestamp": 1700000000000}, ...]}, ...]}
Non-finite values are the strings "NaN", "+Inf", "-Inf" (JSON has no such numbers).
Needs: pip install protobuf cramjam. Exits non-zero on any error, missing modules included.
"""
import json
import math
import pathlib
import re
import sys

try:
    import cramjam
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
except ImportError as e:  # the test must fail, not skip: say what to install
    sys.exit(f"decode_remote_write.py: {e}; run: pip install protobuf cramjam")

SCHEMA = pathlib.Path(__file__).resolve().parent.parent / "proto" / "remote.proto"
F = descriptor_pb2.FieldDescriptorProto
SCALARS = {"double": F.TYPE_DOUBLE, "int64": F.TYPE_INT64, "string": F.TYPE_STRING}


def parse_schema(text):
    """proto3 subset: syntax, package, messages of (repeated) scalar/message fields, reserved."""
    text = re.sub(r"//[^\n]*", "", text)
    fdp = descriptor_pb2.FileDescriptorProto(name="remote.proto", syntax="proto3")
    syntax = re.search(r'syntax\s*=\s*"([^"]+)"\s*;', text)
    if not syntax or syntax.group(1) != "proto3":
        raise ValueError("schema: expected syntax = \"proto3\"")
    package = re.search(r"package\s+([\w.]+)\s*;", text)
    fdp.package = package.group(1) if package else ""
    for name, body in re.findall(r"message\s+(\w+)\s*\{([^}]*)\}", text):
        msg = fdp.message_type.add(name=name)
        for stmt in filter(None, (s.strip() for s in body.split(";"))):
            if stmt.startswith("reserved"):
                continue
            m = re.fullmatch(r"(repeated\s+)?(\w+)\s+(\w+)\s*=\s*(\d+)", stmt)
            if not m:
                raise ValueError(f"schema: cannot parse {stmt!r} in message {name}")
            repeated, ftype, fname, number = m.groups()
            field = msg.field.add(name=fname, number=int(number))
            field.label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
            if ftype in SCALARS:
                field.type = SCALARS[ftype]
            else:
                field.type = F.TYPE_MESSAGE
                field.type_name = f".{fdp.package}.{ftype}" if fdp.package else f".{ftype}"
    if not fdp.message_type:
        raise ValueError("schema: no message found")
    return fdp


def message_class(pool, full_name):
    desc = pool.FindMessageTypeByName(full_name)
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)  # protobuf < 4.21


def number(v):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return v


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: decode_remote_write.py BODY_FILE")
    fdp = parse_schema(SCHEMA.read_text())
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    prefix = f"{fdp.package}." if fdp.package else ""
    WriteRequest = message_class(pool, prefix + "WriteRequest")

    body = pathlib.Path(argv[1]).read_bytes()
    raw = bytes(cramjam.snappy.decompress_raw(body))  # block format; framed input fails here
    req = WriteRequest()
    req.ParseFromString(raw)
    out = {
        "timeseries": [
            {
                "labels": [[l.name, l.value] for l in ts.labels],
                "samples": [{"value": number(s.value), "timestamp": s.timestamp} for s in ts.samples],
            }
            for ts in req.timeseries
        ],
        # Re-encoding with the reference runtime must give the agent's exact bytes.
        "reencoded_equal": req.SerializeToString() == raw,
    }
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main(sys.argv)
