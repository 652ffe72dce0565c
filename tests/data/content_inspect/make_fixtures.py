#!/usr/bin/env python3
"""Regenerates the encrypted-archive fixtures for tests/unit/sanitizers/content_inspect_test.cpp.

libarchive can write encrypted ZIPs (the tests build those at run time) but not encrypted 7z or
RAR, so these four tiny files are hand-assembled here. They only need to be well-formed enough
for a reader to see the encryption markers; the "ciphertext" is filler and decrypts to nothing.

  encrypted-data.7z     one entry "secret.exe" in a folder coded with 7zAES (06F10701)
  encrypted-header.7z   an EncodedHeader behind 7zAES (7z -mhe=on): no name is visible
  encrypted-data.rar    RAR 4 entry "invoice.pdf.exe" with the LHD_PASSWORD flag
  encrypted-header.rar  RAR 4 main header with MHD_PASSWORD (rar -hp): nothing is visible

Usage: python3 make_fixtures.py   (writes into the current directory)
"""
import struct
import zlib


def sevenz_number(n):
    if n < 0x80:
        return bytes([n])
    if n < 0x4000:
        return bytes([0x80 | (n >> 8), n & 0xFF])
    raise ValueError(n)


def sevenz_streams_info(packsize, unpacksize):
    aes = bytes([0x06, 0xF1, 0x07, 0x01])
    props = bytes([0x13 | 0x40, 0x0F]) + bytes(16)  # 2^19 key cycles, 16-byte IV
    coder = bytes([0x20 | len(aes)]) + aes + sevenz_number(len(props)) + props
    out = b"\x06" + sevenz_number(0) + sevenz_number(1) + b"\x09" + sevenz_number(packsize) + b"\x00"
    out += b"\x07\x0B" + sevenz_number(1) + b"\x00" + sevenz_number(1) + coder
    out += b"\x0C" + sevenz_number(unpacksize) + b"\x00"
    return out


def sevenz(encrypted_header):
    packed = bytes(range(32))
    if encrypted_header:
        header = b"\x17" + sevenz_streams_info(len(packed), 64) + b"\x00"
    else:
        name = "secret.exe".encode("utf-16-le") + b"\x00\x00"
        header = b"\x01\x04" + sevenz_streams_info(len(packed), 20) + b"\x08\x00" + b"\x00"
        header += b"\x05" + sevenz_number(1) + b"\x11" + sevenz_number(len(name) + 1) + b"\x00" + name + b"\x00\x00"
    start = struct.pack("<QQI", len(packed), len(header), zlib.crc32(header) & 0xFFFFFFFF)
    sig = b"7z\xbc\xaf\x27\x1c\x00\x04" + struct.pack("<I", zlib.crc32(start) & 0xFFFFFFFF) + start
    return sig + packed + header


def rar_block(htype, flags, body):
    rest = struct.pack("<BHH", htype, flags, 7 + len(body)) + body
    return struct.pack("<H", zlib.crc32(rest) & 0xFFFF) + rest


def rar(encrypted_header):
    marker = b"Rar!\x1a\x07\x00"
    if encrypted_header:
        return marker + rar_block(0x73, 0x0080, struct.pack("<HI", 0, 0)) + bytes(range(48))
    name = b"invoice.pdf.exe"
    data = bytes(range(16))
    body = struct.pack("<IIBIIBBHI", len(data), len(data), 2, 0, 0, 29, 0x30, len(name), 0x20) + name
    return (marker + rar_block(0x73, 0, struct.pack("<HI", 0, 0)) + rar_block(0x74, 0x8000 | 0x0004, body) + data
            + rar_block(0x7B, 0x4000, b""))


if __name__ == "__main__":
    for path, data in (("encrypted-data.7z", sevenz(False)), ("encrypted-header.7z", sevenz(True)),
                       ("encrypted-data.rar", rar(False)), ("encrypted-header.rar", rar(True))):
        with open(path, "wb") as f:
            f.write(data)
