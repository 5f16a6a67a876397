"""PNG files a dataset archive can store as they are: checked chunk by chunk and inflated, never decoded.

A dataset archive holds 8-bit RGB (or grey) PNGs of one power-of-two side. A prepared image that already is
such a PNG (what `ghosts align` writes) does not need a decode and a re-encode to be packed: its chunks are
checked (every CRC), its image data inflated once to check that it holds exactly the rows its header promises,
each starting with a valid filter byte (what a decoder would refuse is refused here), and it is stored
with only its critical chunks, byte for byte. Anything else (another colour type or depth, interlacing, a
palette, transparency, a colour profile, gamma, an EXIF orientation, ...) is decoded as before, so the
pixels in the archive are always the ones a decoder sees in the file.
"""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that never change the decoded pixels: dropped from the stored copy.
INERT = {b"tEXt", b"zTXt", b"iTXt", b"tIME", b"pHYs"}
_CHANNELS = {0: 1, 2: 3}  # colour type -> channels, for the two the format takes (L, RGB)


def has_chunk(fh, kind: bytes) -> bool:
    """Whether the PNG open in `fh` (positioned anywhere) has a chunk of this type, read from the chunk headers
    alone (the data is skipped, not read). False for what is not a PNG."""
    fh.seek(0)
    if fh.read(8) != SIGNATURE:
        return False
    while len(head := fh.read(8)) == 8:
        length, found = struct.unpack(">I4s", head)
        if found == kind:
            return True
        if found == b"IEND":
            return False
        fh.seek(length + 4, 1)
    return False


def png_ihdr(fh) -> tuple[int, int, str] | None:
    """(width, height, mode) of the PNG open in `fh` when it is 8-bit RGB or grey with a well-formed IHDR
    (CRC checked), as Pillow reports them; None for anything else (which Pillow is then asked about)."""
    fh.seek(0)
    head = fh.read(33)
    if len(head) != 33 or head[:8] != SIGNATURE or head[8:16] != b"\x00\x00\x00\rIHDR":
        return None
    if zlib.crc32(head[12:29]) != struct.unpack(">I", head[29:33])[0]:
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", head[16:29])
    if depth != 8 or colour not in _CHANNELS or (compression, filtering) != (0, 0) or interlace > 1:
        return None
    if not (width and height):
        return None
    return width, height, "L" if colour == 0 else "RGB"


def storable_png(data: bytes, side: int, mode: str) -> bytes | None:
    """The bytes to store for `data` when it is a valid, non-interlaced 8-bit `mode` ("RGB" or "L") PNG of
    side x side pixels that holds only critical and inert chunks; None when it must be decoded instead.
    The result is `data` itself when it holds no inert chunk."""
    if data[:8] != SIGNATURE:
        return None
    want_type = 2 if mode == "RGB" else 0 if mode == "L" else None
    pos, n = 8, len(data)
    keep: list[tuple[int, int]] = []  # (start, end) of chunks kept, in order
    header = None
    inflater = zlib.decompressobj()
    raw: list[bytes] = []
    state = "IHDR"  # the next critical chunk expected: IHDR, then IDATs, then IEND
    dropped = False
    while True:
        if pos + 12 > n:
            return None
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > n:
            return None
        body = data[pos + 8 : pos + 8 + length]
        if zlib.crc32(kind + body) != struct.unpack_from(">I", data, end - 4)[0]:
            return None
        if kind == b"IHDR":
            if state != "IHDR" or length != 13:
                return None
            header = struct.unpack(">IIBBBBB", body)
            width, height, depth, colour, compression, filtering, interlace = header
            if (width, height, depth, colour, compression, filtering, interlace) != (
                side,
                side,
                8,
                want_type,
                0,
                0,
                0,
            ):
                return None
            state = "IDAT"
        elif kind == b"IDAT":
            if state not in ("IDAT", "IDAT+"):
                return None
            try:
                raw.append(inflater.decompress(body))
            except zlib.error:
                return None
            state = "IDAT+"
        elif kind == b"IEND":
            if state != "IDAT+" or length != 0:
                return None
            keep.append((pos, end))
            break
        elif kind in INERT and state != "IHDR":
            dropped = True
            pos = end
            continue
        else:
            return (
                None  # a chunk that may change pixels (PLTE, tRNS, gAMA, iCCP, sRGB, eXIf, ...), or unknown
            )
        if keep and keep[-1][1] == pos:
            keep[-1] = (keep[-1][0], end)
        else:
            keep.append((pos, end))
        pos = end
    if not inflater.eof or inflater.unused_data:
        return None
    pixels = b"".join(raw)
    stride = 1 + side * _CHANNELS[want_type]
    if len(pixels) != stride * side or max(pixels[::stride]) > 4:
        return None
    if not dropped and end == n:
        return data
    return SIGNATURE + b"".join(data[a:b] for a, b in keep)
