#!/usr/bin/python3
"""Independent check of refgpt's checkpoint writers (packages/core/src/io/write.ts) with real Python tools.

    /usr/bin/python3 test/python/check_writers.py MANIFEST.json

MANIFEST lists the files test/writers.test.ts wrote and what each must hold:
    {"files": [{"path": ..., "format": "safetensors" | "torch", "metadata": {...} | null,
                "archive": "archive", "tensors": [{"name", "dtype", "shape", "hex"}, ...]}]}
("hex" is the stored little-endian bytes; tensors are listed in the order they were given to the writer.)

torch files:  zipfile (CRC-32 of every entry, stored entries, names, 64-byte data alignment as torch's
              PyTorchStreamWriter lays it out), pickletools (protocol 2 opcodes only), and torch.load with
              weights_only=True and without: an OrderedDict with the names in order, dtypes, shapes,
              contiguous strides, storage offset 0 and the exact bytes.
safetensors:  the header parsed and validated as the safetensors library's Rust reader does (u64 length,
              UTF-8 JSON starting with "{", offsets tiling the data), plus the writer's rules: length a
              multiple of 8 padded with spaces, "__metadata__" first, tensors ordered by dtype (F32, BF16,
              F16) then name bytes, keys dtype/shape/data_offsets, serde_json's compact text; then every
              tensor rebuilt with torch.frombuffer and compared byte for byte.
Prints one line per file and a summary; exits 1 on the first failure.
"""
import collections
import io
import json
import pickletools
import struct
import sys
import zipfile

import torch

DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}
# Position in the safetensors Dtype enum: the writer sorts by it, largest first.
DTYPE_RANK = {"F16": 7, "BF16": 8, "F32": 11}
MAX_HEADER = 100_000_000


def fail(path, msg):
    raise AssertionError(f"{path}: {msg}")


def tensor_bytes(t):
    """The raw little-endian bytes of a contiguous tensor (bf16 included, which numpy lacks)."""
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def check_values(path, name, t, want):
    dtype, _ = DTYPES[want["dtype"]]
    if t.dtype != dtype:
        fail(path, f"{name}: dtype {t.dtype}, expected {dtype}")
    if list(t.shape) != want["shape"]:
        fail(path, f"{name}: shape {list(t.shape)}, expected {want['shape']}")
    got = tensor_bytes(t)
    if got != bytes.fromhex(want["hex"]):
        fail(path, f"{name}: bytes differ ({len(got)} bytes, expected {len(want['hex']) // 2})")


# ---------------------------------------------------------------------------------------------------
# torch zip


def check_torch(entry):
    path = entry["path"]
    archive = entry.get("archive", "archive")
    tensors = entry["tensors"]
    raw = open(path, "rb").read()
    with zipfile.ZipFile(path) as z:
        bad = z.testzip()
        if bad is not None:
            fail(path, f"CRC-32 mismatch in {bad}")
        infos = z.infolist()
        names = [i.filename for i in infos]
        keys = sorted(str(i) for i in range(len(tensors)))
        expected = [f"{archive}/data.pkl", f"{archive}/byteorder"] + [f"{archive}/data/{k}" for k in keys] + [f"{archive}/version"]
        if names != expected:
            fail(path, f"entries {names}, expected {expected}")
        for i in infos:
            if i.compress_type != zipfile.ZIP_STORED:
                fail(path, f"{i.filename} is compressed")
            if raw[i.header_offset:i.header_offset + 4] != b"PK\x03\x04":
                fail(path, f"{i.filename}: no local header at {i.header_offset}")
            n, e = struct.unpack("<HH", raw[i.header_offset + 26:i.header_offset + 30])
            start = i.header_offset + 30 + n + e
            if start % 64 != 0:
                fail(path, f"{i.filename}: data at offset {start}, not 64-byte aligned")
        if z.read(f"{archive}/version") != b"3\n":
            fail(path, f"version is {z.read(f'{archive}/version')!r}")
        if z.read(f"{archive}/byteorder") != b"little":
            fail(path, "byteorder is not little")
        pkl = z.read(f"{archive}/data.pkl")
    ops = list(pickletools.genops(pkl))
    if ops[0][0].name != "PROTO" or ops[0][1] != 2:
        fail(path, f"pickle starts with {ops[0][0].name} {ops[0][1]}, expected PROTO 2")
    late = sorted({op.name for op, _, _ in ops if op.proto > 2})
    if late:
        fail(path, f"pickle uses opcodes newer than protocol 2: {late}")
    pickletools.dis(pkl, out=io.StringIO())  # also checks the memo and the stack discipline

    for weights_only in (True, False):
        sd = torch.load(path, map_location="cpu", weights_only=weights_only)
        if not isinstance(sd, collections.OrderedDict):
            fail(path, f"torch.load gave {type(sd).__name__}, expected OrderedDict")
        if list(sd.keys()) != [t["name"] for t in tensors]:
            fail(path, f"keys {list(sd.keys())[:5]}..., expected {[t['name'] for t in tensors][:5]}...")
        for want in tensors:
            t = sd[want["name"]]
            if not isinstance(t, torch.Tensor) or t.requires_grad:
                fail(path, f"{want['name']}: not a plain tensor")
            if t.storage_offset() != 0 or not t.is_contiguous() or t.stride() != torch.empty(want["shape"]).stride():
                fail(path, f"{want['name']}: offset {t.storage_offset()}, stride {t.stride()}")
            check_values(path, want["name"], t, want)
    return len(tensors)


# ---------------------------------------------------------------------------------------------------
# safetensors


def check_safetensors(entry):
    path = entry["path"]
    tensors = entry["tensors"]
    raw = open(path, "rb").read()
    if len(raw) < 8:
        fail(path, "shorter than 8 bytes")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER or 8 + n > len(raw):
        fail(path, f"header length {n} is invalid")
    if n % 8 != 0:
        fail(path, f"header length {n} is not a multiple of 8")
    text = raw[8:8 + n].decode("utf-8")  # strict: raises on invalid UTF-8
    if not text.startswith("{"):
        fail(path, "header does not start with {")
    body = text.rstrip(" ")
    if len(text) - len(body) >= 8 or not body.endswith("}"):
        fail(path, "header is not JSON padded with fewer than 8 spaces")
    pairs = json.loads(text, object_pairs_hook=lambda kv: kv)  # keeps order and duplicates
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        fail(path, "duplicate keys in the header")
    header = collections.OrderedDict(pairs)
    # serde_json's compact form, which Python's json writes identically (no spaces, raw non-ASCII).
    again = json.dumps(
        collections.OrderedDict((k, collections.OrderedDict(v) if isinstance(v, list) else v) for k, v in pairs),
        separators=(",", ":"), ensure_ascii=False)
    if again != body:
        fail(path, "header is not in serde_json's compact form")

    metadata = header.pop("__metadata__", None)
    if metadata is not None:
        metadata = collections.OrderedDict(metadata)
        if keys[0] != "__metadata__":
            fail(path, "__metadata__ is not the first key")
        if not all(isinstance(v, str) for v in metadata.values()):
            fail(path, "__metadata__ values are not strings")
    if metadata != entry["metadata"] and not (metadata is None and entry["metadata"] is None):
        fail(path, f"__metadata__ is {metadata}, expected {entry['metadata']}")

    want_order = sorted(tensors, key=lambda t: (-DTYPE_RANK[t["dtype"]], t["name"].encode("utf-8")))
    if list(header.keys()) != [t["name"] for t in want_order]:
        fail(path, "tensors are not ordered by dtype (F32, BF16, F16) then name bytes")
    data = raw[8 + n:]
    pos = 0
    for want in want_order:
        info = collections.OrderedDict(header[want["name"]])
        if list(info.keys()) != ["dtype", "shape", "data_offsets"]:
            fail(path, f"{want['name']}: keys {list(info.keys())}")
        begin, end = info["data_offsets"]
        numel = 1
        for d in info["shape"]:
            numel *= d
        dtype, size = DTYPES[info["dtype"]]
        if begin != pos or end - begin != numel * size:
            fail(path, f"{want['name']}: data_offsets {info['data_offsets']} (expected [{pos}, {pos + numel * size}])")
        if (8 + n + begin) % size != 0:
            fail(path, f"{want['name']}: data not aligned to {size} bytes")
        pos = end
        buf = bytearray(data[begin:end])
        t = torch.frombuffer(buf, dtype=dtype) if numel else torch.empty(0, dtype=dtype)
        check_values(path, want["name"], t.reshape(info["shape"]), want)
    if pos != len(data):
        fail(path, f"tensor data covers {pos} of {len(data)} bytes")
    return len(tensors)


def main():
    manifest = json.load(open(sys.argv[1]))
    files = tensors = 0
    for entry in manifest["files"]:
        check = check_torch if entry["format"] == "torch" else check_safetensors
        count = check(entry)
        files += 1
        tensors += count
        print(f"ok {entry['format']:11} {count:5} tensors  {entry['path']}")
    print(f"checked {files} files, {tensors} tensors with torch {torch.__version__}")


if __name__ == "__main__":
    main()
