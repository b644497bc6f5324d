"""Pure Pillow functions: vet uploaded bytes, strip location metadata, derive thumbnails,
hashes and colours. Synchronous and I/O-free; callers run them in a thread executor."""

from __future__ import annotations

import ctypes
import hashlib
import math
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO

from PIL import Image, ImageStat

from core.errors import CorruptImage, GazouError, ImageTooLarge, InvalidInput, UnsupportedImage

UNSUPPORTED_MESSAGE = "Unsupported image type: only JPEG, PNG, GIF and WebP are accepted"
CORRUPT_MESSAGE = "Image data is truncated or corrupt"

MIMETYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}

# No format we accept goes past 65535 on a side (WebP stops at 16383); a PNG header claiming
# more is a lie or an attack, and so is one with a side of zero.
MAX_SIDE = 65535
# Decoding every frame of an animation costs frames x width x height; a few KB of LZW can
# describe thousands of full-canvas frames, so the total is capped as well as the canvas.
MAX_ANIMATION_PIXELS = 600_000_000

# After an image this large (as its header claims), freed memory goes back to the system.
TRIM_MIN_PIXELS = 8_000_000

THUMBNAIL_QUALITY = 85
RESIZE_QUALITY = 90

_GPS_IFD = 0x8825
_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that shows the picture upright (as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# XMP can repeat the EXIF GPS position (exif:GPSLatitude, as an attribute or an element).
_XMP_GPS = re.compile(rb"GPS(?:Latitude|Longitude)")
_XMP_PREFIX = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_EXTENSION_PREFIX = b"http://ns.adobe.com/xmp/extension/\x00"
_EMPTY_XMP_HEAD = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
)
_EMPTY_XMP_TAIL = b'<?xpacket end="w"?>'
# Start-of-frame markers carry the dimensions; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
        return trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


@dataclass(frozen=True, slots=True)
class ProcessedImage:
    """A vetted upload: the bytes to store plus everything derived from them."""

    data: bytes
    thumbnail: bytes
    mimetype: str
    extension: str
    width: int
    height: int
    animated: bool
    frames: int
    sha256: str
    md5: str
    phash: int
    dominant_color: str


def sniff_format(raw: bytes) -> str | None:
    """Name the format ("JPEG", "PNG", "GIF", "WEBP") from magic bytes alone, else None."""
    if raw.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if raw.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if len(raw) >= 12 and raw.startswith(b"RIFF") and raw[8:12] == b"WEBP":
        return "WEBP"
    return None


def process_image(
    raw: bytes,
    *,
    max_pixels: int,
    max_bytes: int | None = None,
    thumb_size: tuple[int, int] = (360, 420),
    resize_width: int | None = None,
) -> ProcessedImage:
    """Vet uploaded bytes and return what to store: cleaned data, thumbnail, hashes, colour."""
    try:
        return _process_image(raw, max_pixels, max_bytes, thumb_size, resize_width)
    finally:
        if _claimed_pixels(raw) >= TRIM_MIN_PIXELS:
            _release_freed_memory()


def _process_image(
    raw: bytes,
    max_pixels: int,
    max_bytes: int | None,
    thumb_size: tuple[int, int],
    resize_width: int | None,
) -> ProcessedImage:
    if max_bytes is not None and len(raw) > max_bytes:
        raise ImageTooLarge(f"Image is larger than {_megabytes(max_bytes)} MB", max_bytes=max_bytes)
    fmt = _require_format(raw)
    if resize_width is not None and resize_width < 1:
        raise InvalidInput("Resize width must be a positive number of pixels")

    with _decoding():
        img, frames = _open_vetted(raw, fmt, max_pixels)
        stored_size = img.size  # before a JPEG's scaled decode shrinks it
        exif = img.info.get("exif")
        if fmt == "PNG":
            # load() skips IDAT checksums, which browsers do not forgive.
            Image.open(BytesIO(raw), formats=["PNG"]).verify()
        layout = _strip_layout(raw, img, frames)
        if layout is not None:
            first = _png_shrink(raw, layout, thumb_size)
            exif = layout.exif or exif
        else:
            first = _verify_frames(img, frames, thumb_size)
            exif = img.info.get("exif")  # a PNG's eXIf may follow the pixels
        turn = _exif_orientation(exif)
        data = _strip_location(raw, fmt)

    width, height = _upright_size(stored_size, turn)
    thumb = _upright(first, turn)
    if resize_width is not None and resize_width < width:
        data = resize_to_width(data, resize_width, max_pixels=max_pixels)
        width, height = _header_size(data)

    return ProcessedImage(
        data=data,
        thumbnail=_thumbnail_jpeg(thumb, thumb_size, img.info.get("icc_profile")),
        mimetype=MIMETYPES[fmt],
        extension=EXTENSIONS[fmt],
        width=width,
        height=height,
        animated=frames > 1,
        frames=frames,
        sha256=hashlib.sha256(raw).hexdigest(),
        md5=hashlib.md5(raw).hexdigest(),
        phash=_dhash(thumb),
        dominant_color=_dominant_color(thumb),
    )


def resize_to_width(raw: bytes, width: int, *, max_pixels: int = MAX_SIDE * MAX_SIDE) -> bytes:
    """Scale to `width` (as displayed), keeping format, aspect and animation; never upscales."""
    if width < 1:
        raise InvalidInput("Resize width must be a positive number of pixels")
    fmt = _require_format(raw)
    with _decoding():
        img, frame_count = _open_vetted(raw, fmt, max_pixels)
        layout = _strip_layout(raw, img, frame_count)
        exif = img.info.get("exif")
        if layout is not None:
            exif = layout.exif or exif
        elif fmt != "JPEG":
            img.load()  # a PNG's eXIf chunk may follow the pixels; a JPEG's never does
            exif = img.info.get("exif")
        turn = _exif_orientation(exif)
        shown_width, shown_height = _upright_size(img.size, turn)
        if width >= shown_width:
            return raw
        height = max(1, round(shown_height * width / shown_width))
        # Resize in stored orientation, then turn upright: the output carries no EXIF.
        target = (height, width) if turn in (5, 6, 7, 8) else (width, height)
        if fmt == "JPEG":
            # Let libjpeg scale the DCT down (to no less than twice the target): a 24 MP photo
            # decodes at a quarter of the cost, and Lanczos finishes the job.
            img.draft(img.mode, (target[0] * 2, target[1] * 2))
        frames: list[Image.Image] = []
        durations: list[int] = []
        if layout is not None:
            frames.append(_upright(_png_resized(raw, layout, target), turn))
            durations.append(0)
        for index in range(frame_count if layout is None else 0):
            img.seek(index)
            img.load()
            frame = _saveable(img, fmt).resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
            if fmt == "GIF" and frame.mode == "RGBA":
                # GIF transparency is on/off and Pillow makes any partial alpha opaque: a halo.
                frame.putalpha(
                    frame.getchannel("A").point(lambda alpha: 255 if alpha >= 128 else 0)
                )
            frames.append(_upright(frame, turn))
            durations.append(int(img.info.get("duration", 0) or 0))
        return _encode(raw, img, fmt, frames, durations)


def hamming(a: int, b: int) -> int:
    """Count the bits that differ between two perceptual hashes."""
    return (a ^ b).bit_count()


def aspect_ratio(width: int, height: int) -> str:
    """Reduce a size to its simplest ratio, e.g. 1920x1080 -> "16:9"."""
    if width < 1 or height < 1:
        raise ValueError(f"aspect ratio needs positive sides, got {width}x{height}")
    divisor = math.gcd(width, height)
    return f"{width // divisor}:{height // divisor}"


def orientation(width: int, height: int) -> str:
    """Classify a size as "landscape", "portrait" or "square"."""
    if width > height:
        return "landscape"
    if height > width:
        return "portrait"
    return "square"


# --- vetting -------------------------------------------------------------------------------


def _megabytes(size: int) -> str:
    # The settings count MB as 1024 * 1024 bytes; say "5", not "5.24288".
    return f"{size / (1024 * 1024):.3g}"


def _require_format(raw: bytes) -> str:
    fmt = sniff_format(raw)
    if fmt is None:
        raise UnsupportedImage(UNSUPPORTED_MESSAGE)
    return fmt


@contextmanager
def _decoding() -> Iterator[None]:
    """Translate whatever Pillow raises while decoding into the domain's errors."""
    try:
        yield
    except GazouError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge("Image has too many pixels (decompression bomb)") from exc
    # Warnings only arrive here when a filter turned them into errors (as our tests do);
    # a malformed-file warning means the same as a malformed-file exception.
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error,
            Warning) as exc:  # fmt: skip
        raise CorruptImage(CORRUPT_MESSAGE) from exc


def _open_vetted(raw: bytes, fmt: str, max_pixels: int) -> tuple[Image.Image, int]:
    """Check the size the header claims, then let Pillow open (not decode) it; with frames."""
    width, height = _header_size(raw, fmt)
    _check_size((width, height), max_pixels)
    # Pillow has a bomb check of its own, run inside Image.open (and GIF, WebP and MPO
    # frame reads): a warning through the process-wide warnings machinery past
    # Image.MAX_IMAGE_PIXELS, an error past twice that. Its default, 89.5 Mpx, would
    # silently cap MAX_IMAGE_PIXELS; raised to the setting, which is checked first here,
    # it never fires and the setting decides. (Only core.imaging uses Pillow.)
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels
    img = Image.open(BytesIO(raw), formats=[fmt])
    _check_size(img.size, max_pixels)  # in case Pillow reads the header differently
    frames = _frame_count(img)
    if frames * width * height > MAX_ANIMATION_PIXELS:
        raise ImageTooLarge(f"Animation has too many pixels ({frames} frames of {width}x{height})")
    return img, frames


def _claimed_pixels(raw: bytes) -> int:
    fmt = sniff_format(raw)
    if fmt is None:
        return 0
    width, height = _header_size(raw, fmt)
    return width * height


def _release_freed_memory() -> None:
    """Give memory freed after a large image back to the system.

    glibc keeps freed blocks in per-thread arenas (and raises its mmap threshold after the
    first large free), so after a burst of large images on the worker threads a process
    kept over a GB it no longer used; malloc_trim returns the free pages of every arena."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _check_size(size: tuple[int, int], limit: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise CorruptImage(CORRUPT_MESSAGE, width=width, height=height)
    if width * height > limit:
        raise ImageTooLarge(f"Image has too many pixels ({width * height} > {limit})")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise CorruptImage(CORRUPT_MESSAGE, width=width, height=height)


def _frame_count(img: Image.Image) -> int:
    # A multi-picture JPEG (MPO) holds a preview or a stereo pair, not an animation.
    if img.format == "MPO":
        return 1
    return int(getattr(img, "n_frames", 1))


def _verify_frames(img: Image.Image, frames: int, thumb_size: tuple[int, int]) -> Image.Image:
    """Decode every frame (corruption surfaces here); return a small copy of the first."""
    if img.format in ("JPEG", "MPO"):
        # A scaled JPEG decode still reads every coefficient, so truncation and damage
        # surface all the same, at a fraction of the time and with far shorter stretches
        # of the GIL held (a 24 MP photo: ~45 ms instead of ~90 ms).
        side = 2 * max(thumb_size)
        img.draft(img.mode, (side, side))
    img.load()
    first = _shrink(img, thumb_size)
    for index in range(1, frames):
        img.seek(index)
        img.load()
    return first


def _header_size(raw: bytes, fmt: str | None = None) -> tuple[int, int]:
    """Read the dimensions from the header without decoding; (0, 0) if there are none."""
    fmt = fmt or _require_format(raw)
    try:
        if fmt == "PNG":
            if raw[12:16] != b"IHDR":
                return 0, 0
            return struct.unpack(">II", raw[16:24])
        if fmt == "GIF":
            return _gif_extent(raw)
        if fmt == "WEBP":
            return _webp_size(raw)
        return _jpeg_size(raw)
    except (struct.error, IndexError):
        return 0, 0


def _jpeg_size(raw: bytes) -> tuple[int, int]:
    # Pillow keeps the last frame header before the scan; take the largest to be safe.
    best = (0, 0)
    for marker, start, end in _jpeg_segments(raw):
        if marker == 0xDA:
            break
        if marker in _JPEG_SOF and end - start >= 9:
            height, width = struct.unpack(">HH", raw[start + 5 : start + 9])
            if width * height >= best[0] * best[1]:
                best = (width, height)
    return best


def _gif_extent(raw: bytes) -> tuple[int, int]:
    """The logical screen, grown to cover any frame that overhangs it (as Pillow does)."""
    width, height = struct.unpack("<HH", raw[6:10])
    flags = raw[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while pos < len(raw):
        block = raw[pos]
        if block == 0x21:  # extension: label, then sub-blocks
            pos = _skip_sub_blocks(raw, pos + 2)
        elif block == 0x2C:  # image descriptor
            left, top, frame_width, frame_height, flags = struct.unpack(
                "<HHHHB", raw[pos + 1 : pos + 10]
            )
            width, height = max(width, left + frame_width), max(height, top + frame_height)
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
            pos = _skip_sub_blocks(raw, pos + 1)  # after the LZW minimum code size
        else:  # trailer, or junk Pillow would stop at too
            break
    return width, height


def _skip_sub_blocks(raw: bytes, pos: int) -> int:
    while pos < len(raw) and raw[pos]:
        pos += raw[pos] + 1
    return pos + 1


def _webp_size(raw: bytes) -> tuple[int, int]:
    chunk = raw[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(raw[24:27], "little") + 1
        height = int.from_bytes(raw[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L":
        bits = int.from_bytes(raw[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", raw[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return 0, 0


# --- derivatives ---------------------------------------------------------------------------


def _shrunk_size(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """No bigger than needed to fill `box` in either orientation."""
    width, height = size
    scale = min(1.0, max(box) / width, max(box) / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrink(img: Image.Image, box: tuple[int, int]) -> Image.Image:
    """A copy no bigger than needed for `box` in either orientation, as RGB or RGBA."""
    size = _shrunk_size(img.size, box)
    if img.mode in ("P", "PA", "1"):
        # Palette images resize only with NEAREST; pre-shrink big ones before widening the mode.
        if img.width * img.height > 4 * 2048 * 2048:
            img = img.resize((size[0] * 4, size[1] * 4), Image.Resampling.NEAREST)
        img = _widen(img)
    elif img.mode not in ("RGB", "RGBA", "L", "LA", "CMYK"):
        img = _widen(img)
    # reducing_gap lets Pillow box-reduce by an integer factor first: a 24 MP photo costs
    # milliseconds instead of a full Lanczos pass.
    return _widen(img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0))


def _widen(img: Image.Image) -> Image.Image:
    """Convert any mode to RGB, or to RGBA when it can be transparent."""
    if img.mode == "RGBA" or (img.mode == "RGB" and "transparency" not in img.info):
        return img
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        # 16-bit greyscale would clip to white if converted directly.
        return img.convert("I").point(lambda value: value / 256).convert("L").convert("RGB")
    if img.mode in ("LA", "La", "PA", "RGBa") or "transparency" in img.info:
        return img.convert("RGBA")
    return img.convert("RGB")


def _upright(img: Image.Image, turn: int) -> Image.Image:
    transpose = _TRANSPOSE.get(turn)
    return img.transpose(transpose) if transpose is not None else img


def _upright_size(size: tuple[int, int], turn: int) -> tuple[int, int]:
    return (size[1], size[0]) if turn in (5, 6, 7, 8) else size


def _on_white(img: Image.Image) -> Image.Image:
    if img.mode != "RGBA":
        return img.convert("RGB")
    background = Image.new("RGB", img.size, (255, 255, 255))
    background.paste(img, mask=img.getchannel("A"))
    return background


def _thumbnail_jpeg(small: Image.Image, box: tuple[int, int], icc: bytes | None) -> bytes:
    thumb = _on_white(small)
    thumb.thumbnail(box, Image.Resampling.LANCZOS)
    out = BytesIO()
    thumb.save(out, "JPEG", quality=THUMBNAIL_QUALITY, icc_profile=_icc_for("RGB", icc))
    return out.getvalue()


def _dhash(small: Image.Image) -> int:
    """64-bit difference hash: is each of 8x8 cells brighter than its right neighbour."""
    grey = _on_white(small).convert("L").resize((9, 8), Image.Resampling.LANCZOS)
    pixels = grey.tobytes()
    bits = 0
    for row in range(8):
        for col in range(8):
            left, right = pixels[row * 9 + col], pixels[row * 9 + col + 1]
            bits = (bits << 1) | (left > right)
    return bits


def _dominant_color(small: Image.Image) -> str:
    """The most frequent of five quantized colours, ignoring fully transparent pixels."""
    img = small.copy()
    img.thumbnail((64, 64), Image.Resampling.BOX)
    mask = None
    if img.mode == "RGBA":
        alpha = img.getchannel("A").point(lambda a: 255 if a else 0)
        if alpha.getbbox() is not None:
            mask = alpha
    rgb = img.convert("RGB")
    if mask is not None:
        # Fill transparent pixels with the visible mean so they don't claim a palette slot.
        mean = tuple(round(v) for v in ImageStat.Stat(rgb, mask).mean)
        filled = Image.new("RGB", rgb.size, mean)
        filled.paste(rgb, mask=mask)
        rgb = filled
    paletted = rgb.quantize(colors=5, method=Image.Quantize.MEDIANCUT)
    counts = paletted.histogram(mask=mask)
    index = max(range(len(counts)), key=counts.__getitem__)
    palette = paletted.getpalette() or [255, 255, 255]
    red, green, blue = palette[index * 3 : index * 3 + 3]
    return f"#{red:02x}{green:02x}{blue:02x}"


# --- large PNGs, a strip at a time ----------------------------------------------------------

# Pillow decodes a PNG into one full-size bitmap (4 bytes a pixel, and a second copy to
# premultiply alpha before resizing): 700 MB for an 88 Mpx RGBA file of a few hundred KB.
# From this size on, a non-interlaced 8-bit PNG is inflated here a strip of rows at a time,
# each strip decoded by Pillow from a small PNG of its own and box-reduced at once, so
# only a strip and the reduced picture are ever in memory.
STRIP_MIN_PIXELS = 8_000_000
# Bytes of decoded pixels per strip: big enough that per-strip costs vanish.
STRIP_BYTES = 8 * 1024 * 1024
# Fed to zlib in slices, so an IDAT of many MB is not copied again for each strip.
_INFLATE_SLICE = 64 * 1024
# PNG colour type -> (channels, the mode Pillow opens it in) for 8-bit samples.
_PNG_COLOUR = {0: (1, "L"), 2: (3, "RGB"), 3: (1, "P"), 4: (2, "LA"), 6: (4, "RGBA")}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PREMULTIPLIED = {"RGBA": "RGBa", "LA": "La"}


@dataclass(frozen=True, slots=True)
class _PngLayout:
    """What decoding a PNG in strips needs: header fields and where the pixel data is."""

    width: int
    height: int
    channels: int
    header: bytes  # the IHDR fields after width and height
    extra: bytes  # PLTE and tRNS chunks, which a strip needs to decode the same
    idat: tuple[tuple[int, int], ...]  # (start, end) of each consecutive IDAT's data
    exif: bytes | None


def _strip_layout(raw: bytes, img: Image.Image, frames: int) -> _PngLayout | None:
    """The layout of a still PNG big enough to be worth decoding in strips, else None."""
    if img.format != "PNG" or frames != 1 or img.width * img.height < STRIP_MIN_PIXELS:
        return None
    return _png_layout(raw, img)


def _png_layout(raw: bytes, img: Image.Image) -> _PngLayout | None:
    """The layout of a PNG that can be decoded in strips, else None (Pillow decodes it)."""
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", raw[16:29])
    if depth != 8 or interlace or colour not in _PNG_COLOUR:
        return None  # 16-bit rows do not survive the mode Pillow widens them to
    channels, mode = _PNG_COLOUR[colour]
    if img.mode != mode:
        return None
    extra: list[bytes] = []
    idat: list[tuple[int, int]] = []
    exif = None
    pos, idat_done = 8, False
    while pos + 12 <= len(raw):
        length, kind = struct.unpack(">I4s", raw[pos : pos + 8])
        end = pos + 8 + length
        if kind == b"IDAT" and not idat_done:
            idat.append((pos + 8, min(end, len(raw))))
        elif idat:
            idat_done = True  # as Pillow, only the first run of IDAT chunks holds pixels
        if kind in (b"PLTE", b"tRNS"):
            extra.append(raw[pos : end + 4])
        elif kind == b"eXIf":
            exif = b"Exif\x00\x00" + raw[pos + 8 : end]
        elif kind == b"IEND":
            break
        pos = end + 4
    if not idat:
        raise CorruptImage(CORRUPT_MESSAGE)
    return _PngLayout(width, height, channels, raw[24:29], b"".join(extra), tuple(idat), exif)


def _png_shrink(raw: bytes, layout: _PngLayout, box: tuple[int, int]) -> Image.Image:
    """What `_shrink` returns for this PNG, decoding every row but a strip at a time."""
    return _widen(_png_resized(raw, layout, _shrunk_size((layout.width, layout.height), box)))


def _png_resized(raw: bytes, layout: _PngLayout, size: tuple[int, int]) -> Image.Image:
    """The PNG resized as resize(size, LANCZOS, reducing_gap=3.0) would (palette and colour
    keys turned into RGB or RGBA first), decoding every row but a strip at a time."""
    width, height = layout.width, layout.height
    # The integer box reduction Pillow's resize(reducing_gap=3.0) would make before Lanczos;
    # done per strip of a multiple of its height, the strips add up to the same picture.
    factor_x = int(width / size[0] / 3.0) or 1
    factor_y = int(height / size[1] / 3.0) or 1
    rows_per_strip = max(1, STRIP_BYTES // (width * 4) // factor_y) * factor_y
    reduced: Image.Image | None = None
    previous = b""  # the last row of the strip before, unfiltered: the next one's filters use it
    for top, rows in _png_strips(raw, layout, rows_per_strip):
        strip = _png_strip_image(layout, rows, previous)
        start = 1 if previous else 0
        previous = strip.crop((0, strip.height - 1, width, strip.height)).tobytes()
        if strip.mode == "P" or "transparency" in strip.info:
            strip = _widen(strip)
        if strip.mode in _PREMULTIPLIED:  # as resize does, so edges do not darken
            strip = strip.convert(_PREMULTIPLIED[strip.mode])
        part = strip.reduce((factor_x, factor_y), box=(0, start, width, strip.height))
        if reduced is None:
            reduced_size = (-(-width // factor_x), -(-height // factor_y))
            reduced = Image.new(part.mode, reduced_size)
        reduced.paste(part, (0, top // factor_y))
    assert reduced is not None  # _png_strips yields at least one strip or raises
    small = reduced.resize(
        size, Image.Resampling.LANCZOS, box=(0, 0, width / factor_x, height / factor_y)
    )
    if small.mode in ("RGBa", "La"):
        small = small.convert(small.mode.upper())
    return small


def _png_strips(
    raw: bytes, layout: _PngLayout, rows_per_strip: int
) -> Iterator[tuple[int, list[bytes]]]:
    """(first row, pieces of its filtered rows) of each strip, inflated from the IDATs."""
    stride = layout.width * layout.channels + 1  # a filter byte leads each row
    inflater = zlib.decompressobj()
    view = memoryview(raw)
    top, pieces, have = 0, [], 0  # kept in pieces: joining them would copy every byte again
    wanted = min(rows_per_strip, layout.height) * stride
    for start, end in layout.idat:
        for piece in range(start, end, _INFLATE_SLICE):
            data: bytes | memoryview = view[piece : min(piece + _INFLATE_SLICE, end)]
            while data:
                pieces.append(inflater.decompress(data, wanted - have))
                have += len(pieces[-1])
                data = inflater.unconsumed_tail
                if have == wanted:
                    yield top, pieces
                    top += wanted // stride
                    if top == layout.height:
                        return  # Pillow ignores whatever follows the last row too
                    pieces, have = [], 0
                    wanted = min(rows_per_strip, layout.height - top) * stride
            if inflater.eof:
                break
    raise CorruptImage(CORRUPT_MESSAGE)  # the rows ran out: truncated


def _png_strip_image(layout: _PngLayout, rows: list[bytes], previous: bytes) -> Image.Image:
    """Decode filtered rows as a PNG of their own, led by the row before them, unfiltered."""
    stride = layout.width * layout.channels + 1
    count = sum(len(piece) for piece in rows) // stride + (1 if previous else 0)
    lead = b"\x00" + previous if previous else b""
    body = _stored_zlib(lead, *rows)
    crc = zlib.crc32(b"IDAT")
    for part in body:
        crc = zlib.crc32(part, crc)
    header = struct.pack(">II", layout.width, count) + layout.header
    png = b"".join(
        (
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            layout.extra,
            struct.pack(">I", sum(len(part) for part in body)),
            b"IDAT",
            *body,
            struct.pack(">I", crc),
            _png_chunk(b"IEND", b""),
        )
    )
    strip = Image.open(BytesIO(png), formats=["PNG"])
    strip.load()
    return strip


def _stored_zlib(*buffers: bytes | bytearray) -> list[bytes | memoryview]:
    """A zlib stream of the buffers in stored blocks: framing and a checksum, no deflating
    (which costs as much as decoding the strip, even at level 0)."""
    parts: list[bytes | memoryview] = [b"\x78\x01"]
    adler = 1
    blocks = [
        memoryview(buffer)[start : start + 65535]
        for buffer in buffers
        for start in range(0, len(buffer), 65535)
    ]
    for index, block in enumerate(blocks):
        final = index == len(blocks) - 1
        parts += (struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF), block)
        adler = zlib.adler32(block, adler)
    parts.append(struct.pack(">I", adler))
    return parts


# --- resizing ------------------------------------------------------------------------------


def _saveable(frame: Image.Image, fmt: str) -> Image.Image:
    """A mode the target encoder writes and Lanczos can resize."""
    if fmt == "JPEG" and frame.mode in ("L", "RGB", "CMYK"):
        return frame
    if fmt == "PNG" and frame.mode in ("L", "LA", "RGB", "RGBA", "I;16"):
        return frame
    widened = _widen(frame)
    return widened.convert("RGB") if fmt == "JPEG" else widened


def _encode(
    raw: bytes, source: Image.Image, fmt: str, frames: list[Image.Image], durations: list[int]
) -> bytes:
    out = BytesIO()
    first, rest = frames[0], frames[1:]
    options: dict[str, object] = {}
    icc = _icc_for(first.mode, source.info.get("icc_profile"))
    if icc:
        options["icc_profile"] = icc
    if rest:
        options.update(save_all=True, append_images=rest, duration=durations)
        if "loop" in source.info:
            options["loop"] = source.info["loop"]
    if fmt == "JPEG":
        first.save(out, "JPEG", quality=RESIZE_QUALITY, **options)
    elif fmt == "PNG":
        first.save(out, "PNG", **options)
    elif fmt == "GIF":
        if rest and any(frame.mode == "RGBA" for frame in frames):
            # Frames are whole composited canvases: clear before each so holes stay holes.
            options["disposal"] = 2
        first.save(out, "GIF", **options)
    else:
        if _webp_is_lossless(raw):
            options["lossless"] = True
        else:
            options["quality"] = RESIZE_QUALITY
        first.save(out, "WEBP", **options)
    return out.getvalue()


def _webp_is_lossless(raw: bytes) -> bool:
    for fourcc, start, end in _riff_chunks(raw):
        if fourcc == b"VP8 ":
            return False
        # An animation frame: 16 bytes of frame header, then its own bitstream chunks.
        if fourcc == b"ANMF" and any(
            sub == b"VP8 " for sub, _, _ in _riff_chunks(raw, start + 24, end)
        ):
            return False
    return True


def _icc_for(mode: str, icc: bytes | None) -> bytes | None:
    """The profile if it describes `mode`'s colour space (a CMYK profile on RGB lies)."""
    if not icc or len(icc) < 20:
        return None
    space = {"RGB": b"RGB ", "RGBA": b"RGB ", "L": b"GRAY", "LA": b"GRAY", "CMYK": b"CMYK"}
    return icc if space.get(mode) == icc[16:20] else None


# --- location metadata ---------------------------------------------------------------------


def _strip_location(raw: bytes, fmt: str) -> bytes:
    """Remove GPS from EXIF (and XMP) at the container level; `raw` itself if there is none."""
    if fmt == "JPEG":
        return _strip_jpeg(raw)
    if fmt == "PNG":
        return _strip_png(raw)
    if fmt == "WEBP":
        return _strip_webp(raw)
    return raw  # GIF has no EXIF


def _exif_orientation(exif: bytes | None) -> int:
    return _scan_ifd0(exif)[1] if exif else 1


def _scan_ifd0(exif: bytes) -> tuple[bool, int]:
    """(has a GPS IFD, orientation) read straight from IFD0, without Pillow's warnings."""
    tiff = re.sub(b"^(Exif\x00\x00){1,2}", b"", exif)
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return False, 1
    (offset,) = struct.unpack(order + "I", tiff[4:8])
    if offset + 2 > len(tiff):
        return False, 1
    (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
    has_gps, turn = False, 1
    for entry in range(min(count, (len(tiff) - offset - 2) // 12)):
        start = offset + 2 + entry * 12
        tag, kind = struct.unpack(order + "HH", tiff[start : start + 4])
        if tag == _GPS_IFD:
            has_gps = True
        elif tag == _ORIENTATION and kind == 3:  # SHORT
            (value,) = struct.unpack(order + "H", tiff[start + 8 : start + 10])
            turn = value if value in _TRANSPOSE else 1
    return has_gps, turn


def _exif_without_gps(exif: bytes) -> bytes | None:
    """EXIF (with the "Exif\\0\\0" prefix) minus the GPS IFD; None if it had none."""
    has_gps, turn = _scan_ifd0(exif)
    if not has_gps:
        return None
    try:
        parsed = Image.Exif()
        parsed.load(exif)
        del parsed[_GPS_IFD]
        cleaned = parsed.tobytes()
        if not _scan_ifd0(cleaned)[0] and len(cleaned) <= 65000:
            return cleaned
    except Exception:  # whatever Pillow trips on, the minimal EXIF below is safe
        pass
    return _minimal_exif(turn)


def _minimal_exif(turn: int) -> bytes:
    """EXIF keeping only what changes how the picture is shown, written without Pillow."""
    entries = [struct.pack(">HHIHH", _ORIENTATION, 3, 1, turn, 0)] if turn != 1 else []
    ifd0 = struct.pack(">H", len(entries)) + b"".join(entries) + b"\x00\x00\x00\x00"
    return b"Exif\x00\x00MM\x00\x2a" + struct.pack(">I", 8) + ifd0


def _xmp_has_gps(xmp: bytes) -> bool:
    return _XMP_GPS.search(xmp) is not None


def _jpeg_segments(raw: bytes, image_start: int = 0) -> Iterator[tuple[int, int, int]]:
    """(marker, start, end) of each segment up to and including SOS; start is at the 0xFF."""
    pos = image_start + 2
    while pos < len(raw) - 1:
        start = raw.find(b"\xff", pos)
        if start < 0:
            return
        marker_at = start
        while marker_at < len(raw) and raw[marker_at] == 0xFF:
            marker_at += 1  # fill bytes
        if marker_at >= len(raw):
            return
        marker = raw[marker_at]
        if marker in _JPEG_STANDALONE or marker == 0x00:
            pos = marker_at + 1
            continue
        if marker == 0xD9:
            return
        if marker_at + 3 > len(raw):
            return
        (length,) = struct.unpack(">H", raw[marker_at + 1 : marker_at + 3])
        end = marker_at + 1 + length
        yield marker, marker_at - 1, min(end, len(raw))
        if marker == 0xDA:
            return
        pos = end


def _strip_jpeg(raw: bytes) -> bytes:
    # Replacements keep every segment's length, so nothing after them moves: a multi-picture
    # JPEG (MPO, Ultra HDR gain map) finds its later pictures by offset, and they carry
    # EXIF of their own, so each embedded picture is walked too.
    out: bytearray | None = None
    image_start = 0
    while image_start >= 0:
        scan, multi_picture = image_start, False
        for marker, start, end in _jpeg_segments(raw, image_start):
            scan = end
            if marker == 0xE2 and raw.startswith(b"MPF\x00", start + 4):
                multi_picture = True
            elif marker == 0xE1:
                payload = raw[start + 4 : end]
                cleaned = _payload_without_gps(payload)
                if cleaned is not payload:
                    out = bytearray(raw) if out is None else out
                    out[start + 4 : end] = cleaned
        if image_start == 0 and not multi_picture:
            break  # searching 20 MB for trailing pictures costs more than the rest of the walk
        # Entropy-coded data escapes every 0xFF, so the first FFD9 after the scan ends it.
        image_end = raw.find(b"\xff\xd9", scan)
        image_start = raw.find(b"\xff\xd8\xff", image_end + 2) if image_end >= 0 else -1
    return raw if out is None else bytes(out)


def _payload_without_gps(payload: bytes) -> bytes:
    """An APP1 payload of the same length, with any GPS in EXIF or XMP gone."""
    if payload.startswith(b"Exif\x00\x00"):
        cleaned = _exif_without_gps(payload)
        if cleaned is None:
            return payload
        for candidate in (cleaned, _minimal_exif(_scan_ifd0(payload)[1]), _minimal_exif(1)):
            if len(candidate) <= len(payload):
                # TIFF readers follow offsets and never look at trailing padding.
                return candidate.ljust(len(payload), b"\x00")
        return b"\x00" * len(payload)
    if payload.startswith(_XMP_PREFIX) and _xmp_has_gps(payload):
        # XMP packets are whitespace-padded by design, so an empty one pads to any length.
        room = len(payload) - len(_XMP_PREFIX) - len(_EMPTY_XMP_HEAD) - len(_EMPTY_XMP_TAIL)
        if room >= 0:
            return _XMP_PREFIX + _EMPTY_XMP_HEAD + b" " * room + _EMPTY_XMP_TAIL
        return _XMP_PREFIX + b" " * (len(payload) - len(_XMP_PREFIX))
    if payload.startswith(_XMP_EXTENSION_PREFIX) and _xmp_has_gps(payload):
        # Extended XMP: a 32-byte GUID and two lengths, then a slice of the packet.
        header = len(_XMP_EXTENSION_PREFIX) + 40
        return payload[:header] + b" " * (len(payload) - header)
    return payload


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_xmp_has_gps(data: bytes) -> bool:
    if not data.startswith(b"XML:com.adobe.xmp\x00"):
        return False
    compressed = data[18:19] == b"\x01"
    if compressed:
        # iTXt: keyword, flag, method, language\0, translated keyword\0, text
        text = data[20:].split(b"\x00", 2)[-1]
        decoder = zlib.decompressobj()
        try:
            text = decoder.decompress(text, 4_000_000)
        except zlib.error:
            return True  # unreadable, so it cannot be vouched for
        return _xmp_has_gps(text)
    return _xmp_has_gps(data)


def _strip_png(raw: bytes) -> bytes:
    parts = [raw[:8]]
    pos, changed = 8, False
    while pos + 12 <= len(raw):
        (length,) = struct.unpack(">I", raw[pos : pos + 4])
        kind = raw[pos + 4 : pos + 8]
        end = pos + 12 + length
        data = raw[pos + 8 : pos + 8 + length]
        chunk = raw[pos:end]
        if kind == b"eXIf":
            cleaned = _exif_without_gps(data)
            if cleaned is not None:
                chunk = _png_chunk(kind, cleaned.removeprefix(b"Exif\x00\x00"))
                changed = True
        elif kind == b"iTXt" and _png_xmp_has_gps(data):
            chunk, changed = b"", True
        parts.append(chunk)
        pos = end
        if kind == b"IEND":
            break
    if not changed:
        return raw
    parts.append(raw[pos:])
    return b"".join(parts)


def _riff_chunks(
    raw: bytes, pos: int = 12, stop: int | None = None
) -> Iterator[tuple[bytes, int, int]]:
    """(fourcc, start, end) of each WebP chunk; `end` includes the padding byte."""
    stop = len(raw) if stop is None else stop
    while pos + 8 <= stop:
        fourcc = raw[pos : pos + 4]
        (size,) = struct.unpack("<I", raw[pos + 4 : pos + 8])
        end = min(pos + 8 + size + (size & 1), stop)
        yield fourcc, pos, end
        pos = end


def _strip_webp(raw: bytes) -> bytes:
    parts: list[bytes] = []
    changed = False
    drop_xmp_flag = False
    for fourcc, start, end in _riff_chunks(raw):
        chunk = raw[start:end]
        payload = raw[start + 8 : start + 8 + struct.unpack("<I", raw[start + 4 : start + 8])[0]]
        if fourcc == b"EXIF":
            cleaned = _exif_without_gps(payload)
            if cleaned is not None:
                # WebP stores bare TIFF, though some writers keep the JPEG-style prefix.
                if not payload.startswith(b"Exif\x00\x00"):
                    cleaned = cleaned.removeprefix(b"Exif\x00\x00")
                chunk = b"EXIF" + struct.pack("<I", len(cleaned)) + cleaned
                chunk += b"\x00" * (len(cleaned) & 1)
                changed = True
        elif fourcc == b"XMP " and _xmp_has_gps(payload):
            chunk, changed, drop_xmp_flag = b"", True, True
        parts.append(chunk)
    if not changed:
        return raw
    if drop_xmp_flag and parts and parts[0][:4] == b"VP8X":
        parts[0] = parts[0][:8] + bytes([parts[0][8] & ~0x04]) + parts[0][9:]
    body = b"WEBP" + b"".join(parts)
    return b"RIFF" + struct.pack("<I", len(body)) + body
