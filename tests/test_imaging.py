"""core.imaging against real images made with Pillow in memory."""

from __future__ import annotations

import hashlib
import struct
import time
import warnings
import zlib
from io import BytesIO

import pytest
from PIL import Image, ImageDraw, ImageFile

from core import imaging
from core.errors import CorruptImage, ImageTooLarge, UnsupportedImage
from core.imaging import (
    aspect_ratio,
    hamming,
    orientation,
    process_image,
    resize_to_width,
    sniff_format,
)

MAX_PIXELS = 50_000_000
GPS = {1: "N", 2: (51.0, 30.0, 12.5), 3: "E", 4: (0.0, 7.0, 39.0)}


def picture(size: tuple[int, int] = (400, 300), variant: int = 0) -> Image.Image:
    """A structured RGB picture (gradient plus shapes) that hashes and compresses like a photo."""
    width, height = size
    img = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize(size),
            Image.linear_gradient("L").rotate(90).resize(size),
            Image.new("L", size, 90 + 60 * variant),
        ),
    )
    draw = ImageDraw.Draw(img)
    if variant == 0:
        draw.ellipse((width * 0.1, height * 0.2, width * 0.5, height * 0.8), fill=(240, 200, 30))
        draw.rectangle((width * 0.6, height * 0.1, width * 0.9, height * 0.5), fill=(20, 40, 160))
    else:
        draw.rectangle((width * 0.05, height * 0.55, width * 0.45, height * 0.95), fill="white")
        draw.ellipse((width * 0.55, height * 0.05, width * 0.95, height * 0.6), fill="black")
        draw.line((0, 0, width, height), fill=(255, 0, 0), width=max(1, width // 20))
    return img


def encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    out = BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def gps_exif(orientation_tag: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Gazou Camera"
    if orientation_tag is not None:
        exif[0x0112] = orientation_tag
    exif[0x8825] = GPS
    return exif


def animated_gif(frames: int = 3, size: tuple[int, int] = (120, 80)) -> bytes:
    images = [Image.new("RGB", size, colour) for colour in ("red", "lime", "blue", "white")]
    for index, img in enumerate(images):
        ImageDraw.Draw(img).rectangle((index * 10, 10, index * 10 + 30, 40), fill="black")
    durations = [100, 200, 300, 400][:frames]
    first, *rest = images[:frames]
    return encode(first, "GIF", save_all=True, append_images=rest, duration=durations, loop=0)


def scan_data(jpeg: bytes) -> bytes:
    """Everything from the first start-of-scan marker on: the compressed pixels."""
    return jpeg[jpeg.index(b"\xff\xda") :]


def png_with_header_size(width: int, height: int) -> bytes:
    """A tiny real PNG whose IHDR is rewritten (with a valid CRC) to claim another size."""
    raw = bytearray(encode(Image.new("1", (8, 8)), "PNG"))
    raw[16:24] = struct.pack(">II", width, height)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    return bytes(raw)


def flat_grey_png(width: int, height: int) -> bytes:
    """A greyscale PNG written row by row (never whole in memory): left half black, right
    half white, with a grey band across the top quarter."""
    half = width // 2
    plain = b"\x00" + b"\x00" * half + b"\xff" * (width - half)
    band = b"\x00" + b"\x80" * width
    packer = zlib.compressobj(9)
    body = [packer.compress(band if row < height // 4 else plain) for row in range(height)]
    body.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"".join(
        (b"\x89PNG\r\n\x1a\n", png_chunk(b"IHDR", ihdr), png_chunk(b"IDAT", b"".join(body)),
         png_chunk(b"IEND", b""))
    )  # fmt: skip


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_chunks(raw: bytes) -> list[tuple[bytes, bytes]]:
    """(kind, data) of each chunk of a PNG."""
    chunks, pos = [], 8
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos : pos + 4])
        chunks.append((raw[pos + 4 : pos + 8], raw[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def png_of(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(kind, data) for kind, data in chunks)


def frames_of(data: bytes) -> list[Image.Image]:
    img = Image.open(BytesIO(data))
    result = []
    for index in range(getattr(img, "n_frames", 1)):
        img.seek(index)
        result.append(img.convert("RGB"))
    return result


# --- identification and refusal ---------------------------------------------------------------


def test_png_renamed_jpg_is_identified_by_bytes() -> None:
    raw = encode(picture(), "PNG")  # whatever the upload was called, the bytes say PNG

    result = process_image(raw, max_pixels=MAX_PIXELS)

    assert sniff_format(raw) == "PNG"
    assert (result.mimetype, result.extension) == ("image/png", "png")


def test_each_accepted_format_is_sniffed() -> None:
    img = picture((32, 32))

    sniffed = [sniff_format(encode(img, fmt)) for fmt in ("JPEG", "PNG", "GIF", "WEBP")]

    assert sniffed == ["JPEG", "PNG", "GIF", "WEBP"]


def test_text_file_is_refused_as_unsupported() -> None:
    with pytest.raises(UnsupportedImage, match="only JPEG, PNG, GIF and WebP"):
        process_image(b"hello, this is not an image\n", max_pixels=MAX_PIXELS)


def test_bmp_is_refused_even_though_pillow_reads_it() -> None:
    with pytest.raises(UnsupportedImage):
        process_image(encode(picture((16, 16)), "BMP"), max_pixels=MAX_PIXELS)


def test_truncated_jpeg_is_refused_as_corrupt() -> None:
    raw = encode(picture(), "JPEG", quality=90)

    with pytest.raises(CorruptImage, match="truncated or corrupt"):
        process_image(raw[: len(raw) // 2], max_pixels=MAX_PIXELS)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png_is_refused_as_corrupt() -> None:
    raw = encode(picture(), "PNG")

    with pytest.raises(CorruptImage):
        process_image(raw[: len(raw) // 2], max_pixels=MAX_PIXELS)


def test_png_with_bad_checksum_is_refused_as_corrupt() -> None:
    raw = bytearray(encode(picture(), "PNG"))
    raw[-20] ^= 0xFF  # inside the last IDAT's CRC or data

    with pytest.raises(CorruptImage):
        process_image(bytes(raw), max_pixels=MAX_PIXELS)


def test_gif_with_a_broken_later_frame_is_refused() -> None:
    raw = animated_gif(frames=3)

    with pytest.raises(CorruptImage):
        process_image(raw[:-12], max_pixels=MAX_PIXELS)


def test_jpeg_claiming_zero_height_is_refused_as_corrupt() -> None:
    raw = bytearray(encode(picture((64, 48)), "JPEG"))
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5 : sof + 7] = b"\x00\x00"

    with pytest.raises(CorruptImage):
        process_image(bytes(raw), max_pixels=MAX_PIXELS)


def test_png_claiming_an_absurd_side_is_refused_as_corrupt() -> None:
    with pytest.raises(CorruptImage):
        process_image(png_with_header_size(1, 100_000), max_pixels=MAX_PIXELS)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    raw = png_with_header_size(20_000, 20_000)
    assert len(raw) < 200

    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="too many pixels"):
        process_image(raw, max_pixels=MAX_PIXELS)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "animated GIF"])
def test_max_pixels_above_pillows_own_limit_is_honoured_without_any_warning(
    monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    # 30,000 pixels is past twice this, where Pillow raises rather than warns.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    if fmt == "animated GIF":
        raw = animated_gif(frames=3, size=(200, 150))
    else:
        raw = encode(picture((200, 150)), fmt)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = process_image(raw, max_pixels=MAX_PIXELS, resize_width=100)
    assert caught == []
    assert (result.width, result.height) == (100, 75)


def test_max_pixels_below_the_image_refuses_without_any_warning() -> None:
    raw = encode(picture((200, 150)), "PNG")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageTooLarge, match=r"\(30000 > 20000\)"):
            process_image(raw, max_pixels=20_000)
    assert caught == []


def test_png_past_pillows_default_limit_is_accepted_under_a_higher_setting() -> None:
    # 90 Mpx, past Pillow's 89.5 Mpx default, which used to cap MAX_IMAGE_PIXELS silently.
    raw = flat_grey_png(10_000, 9_000)
    assert 10_000 * 9_000 > 89_478_485

    with pytest.raises(ImageTooLarge, match="too many pixels"):
        process_image(raw, max_pixels=89_000_000)
    result = process_image(raw, max_pixels=100_000_000)

    assert (result.width, result.height) == (10_000, 9_000)
    assert Image.open(BytesIO(result.thumbnail)).size == (360, 324)
    assert result.dominant_color in ("#000000", "#ffffff")
    assert result.data == raw


def test_too_many_pixels_refused() -> None:
    with pytest.raises(ImageTooLarge, match=r"\(120000 > 100000\)"):
        process_image(encode(picture((400, 300)), "JPEG"), max_pixels=100_000)


def test_animation_with_too_many_pixels_in_total_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(imaging, "MAX_ANIMATION_PIXELS", 2 * 120 * 80)

    with pytest.raises(ImageTooLarge, match="3 frames"):
        process_image(animated_gif(frames=3), max_pixels=MAX_PIXELS)


def test_max_bytes_refused() -> None:
    raw = encode(picture(), "PNG")

    with pytest.raises(ImageTooLarge, match="larger than 5 MB"):
        process_image(
            raw + b"\x00" * 5 * 1024 * 1024, max_pixels=MAX_PIXELS, max_bytes=5 * 1024 * 1024
        )


# --- location metadata ------------------------------------------------------------------------


def test_gps_is_stripped_but_orientation_kept() -> None:
    raw = encode(picture(), "JPEG", quality=90, exif=gps_exif(orientation_tag=6))
    assert 0x8825 in Image.open(BytesIO(raw)).getexif()

    data = process_image(raw, max_pixels=MAX_PIXELS).data

    exif = Image.open(BytesIO(data)).getexif()
    assert 0x8825 not in exif
    assert exif.get_ifd(0x8825) == {}
    assert exif[0x0112] == 6
    assert exif[0x010F] == "Gazou Camera"
    assert scan_data(data) == scan_data(raw)


def test_jpeg_without_gps_is_stored_byte_for_byte() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Gazou Camera"
    raw = encode(picture(), "JPEG", quality=90, exif=exif)

    assert process_image(raw, max_pixels=MAX_PIXELS).data == raw


def test_hashes_are_of_the_uploaded_bytes_even_when_gps_is_stripped() -> None:
    raw = encode(picture(), "JPEG", exif=gps_exif())

    result = process_image(raw, max_pixels=MAX_PIXELS)

    assert result.data != raw
    assert result.sha256 == hashlib.sha256(raw).hexdigest()
    assert result.md5 == hashlib.md5(raw).hexdigest()


def test_xmp_gps_is_stripped_from_jpeg() -> None:
    xmp = b'<x:xmpmeta><rdf:Description exif:GPSLatitude="51,30.2N"/></x:xmpmeta>'
    raw = encode(picture(), "JPEG", xmp=xmp)
    assert b"GPSLatitude" in raw

    data = process_image(raw, max_pixels=MAX_PIXELS).data

    assert b"GPSLatitude" not in data
    assert scan_data(data) == scan_data(raw)


def test_gps_is_stripped_from_every_picture_of_a_multi_picture_jpeg() -> None:
    raw = encode(picture(), "MPO", save_all=True, append_images=[picture(variant=1)],
                 exif=gps_exif(orientation_tag=6))  # fmt: skip

    data = process_image(raw, max_pixels=MAX_PIXELS).data

    stored = Image.open(BytesIO(data))
    for index in range(2):  # the MPF offsets still find the second picture
        stored.seek(index)
        stored.load()
        assert 0x8825 not in stored.getexif()
        assert stored.getexif()[0x0112] == 6
    assert len(data) == len(raw)


def test_gps_is_still_stripped_when_pillow_cannot_rewrite_the_exif(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = encode(picture(), "JPEG", exif=gps_exif(orientation_tag=8))

    def refuse(self: Image.Exif, offset: int = 8) -> bytes:
        raise ValueError("cannot serialise this MakerNote")

    monkeypatch.setattr(Image.Exif, "tobytes", refuse, raising=True)
    data = process_image(raw, max_pixels=MAX_PIXELS).data
    monkeypatch.undo()

    exif = Image.open(BytesIO(data)).getexif()
    assert dict(exif) == {0x0112: 8}
    assert scan_data(data) == scan_data(raw)


def test_png_gps_is_stripped_without_touching_pixel_data() -> None:
    raw = encode(picture(), "PNG", exif=gps_exif(orientation_tag=3))

    data = process_image(raw, max_pixels=MAX_PIXELS).data

    stored = Image.open(BytesIO(data))
    assert 0x8825 not in stored.getexif()
    assert stored.getexif()[0x0112] == 3
    assert data[data.index(b"IDAT") :] == raw[raw.index(b"IDAT") :]


def test_webp_gps_is_stripped_without_reencoding() -> None:
    raw = encode(picture(), "WEBP", quality=80, exif=gps_exif(orientation_tag=1))

    data = process_image(raw, max_pixels=MAX_PIXELS).data

    stored = Image.open(BytesIO(data))
    assert 0x8825 not in stored.getexif()
    assert stored.getexif()[0x010F] == "Gazou Camera"
    assert data[data.index(b"VP8 ") :].startswith(raw[raw.index(b"VP8 ") : raw.index(b"EXIF")])


# --- animation --------------------------------------------------------------------------------


def test_animated_gif_keeps_all_frames() -> None:
    raw = animated_gif(frames=4)

    result = process_image(raw, max_pixels=MAX_PIXELS)

    assert (result.animated, result.frames) == (True, 4)
    assert result.data == raw


def test_still_gif_is_not_animated() -> None:
    result = process_image(encode(picture(), "GIF"), max_pixels=MAX_PIXELS)

    assert (result.animated, result.frames) == (False, 1)


def test_animated_gif_resize_keeps_animation() -> None:
    raw = animated_gif(frames=3, size=(120, 80))

    resized = resize_to_width(raw, 60)

    img = Image.open(BytesIO(resized))
    assert (img.format, img.size, img.n_frames) == ("GIF", (60, 40), 3)
    assert img.info["loop"] == 0
    durations = []
    for index in range(3):
        img.seek(index)
        durations.append(img.info["duration"])
    assert durations == [100, 200, 300]
    centres = [frame.getpixel((55, 35)) for frame in frames_of(resized)]
    assert centres[0][0] > 200 and centres[1][1] > 200 and centres[2][2] > 200


def test_animated_webp_resize_keeps_animation() -> None:
    frames = [Image.new("RGB", (100, 100), colour) for colour in ("red", "blue")]
    raw = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=[50, 70])

    result = process_image(raw, max_pixels=MAX_PIXELS, resize_width=50)

    img = Image.open(BytesIO(result.data))
    assert (result.animated, result.frames, result.width, result.height) == (True, 2, 50, 50)
    assert (img.format, img.size, img.n_frames) == ("WEBP", (50, 50), 2)


# --- thumbnails -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [((2000, 1000), (360, 180)), ((1000, 2000), (210, 420)), ((900, 1050), (360, 420))],
)
def test_thumbnail_fits_360x420_and_is_jpeg(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    result = process_image(encode(picture(size), "PNG"), max_pixels=MAX_PIXELS)

    thumb = Image.open(BytesIO(result.thumbnail))
    assert (thumb.format, thumb.mode, thumb.size) == ("JPEG", "RGB", expected)


def test_thumbnail_never_upscales() -> None:
    result = process_image(encode(picture((100, 50)), "JPEG"), max_pixels=MAX_PIXELS)

    assert Image.open(BytesIO(result.thumbnail)).size == (100, 50)


def test_rgba_png_thumbnail_has_white_background() -> None:
    img = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle((0, 0, 49, 49), fill=(0, 0, 255, 255))

    thumb = Image.open(BytesIO(process_image(encode(img, "PNG"), max_pixels=MAX_PIXELS).thumbnail))

    red, green, blue = thumb.getpixel((150, 150))
    assert min(red, green, blue) >= 250
    assert thumb.getpixel((10, 10))[2] > 200


def test_thumbnail_of_animation_is_its_first_frame() -> None:
    result = process_image(animated_gif(frames=3), max_pixels=MAX_PIXELS)

    red, green, blue = Image.open(BytesIO(result.thumbnail)).getpixel((100, 70))
    assert red > 200 and green < 60 and blue < 60


def test_exif_rotation_is_applied_to_thumbnail_and_reported_size() -> None:
    img = Image.new("RGB", (400, 200), "white")
    ImageDraw.Draw(img).rectangle((0, 0, 99, 199), fill="black")  # black on the stored left
    raw = encode(img, "JPEG", exif=gps_exif(orientation_tag=6))  # 6: turn 90° clockwise

    result = process_image(raw, max_pixels=MAX_PIXELS)

    thumb = Image.open(BytesIO(result.thumbnail))
    assert (result.width, result.height) == (200, 400)
    assert thumb.size == (200, 400)
    assert thumb.getpixel((100, 20))[0] < 30  # the left edge is now on top
    assert thumb.getpixel((100, 380))[0] > 225


def test_sixteen_bit_greyscale_png_is_not_washed_out() -> None:
    img = Image.new("I;16", (64, 64), 32768)

    thumb = Image.open(BytesIO(process_image(encode(img, "PNG"), max_pixels=MAX_PIXELS).thumbnail))

    assert 110 < thumb.getpixel((32, 32))[0] < 145


def test_webp_is_accepted() -> None:
    result = process_image(encode(picture(), "WEBP", quality=80), max_pixels=MAX_PIXELS)

    assert (result.mimetype, result.extension) == ("image/webp", "webp")
    assert (result.width, result.height, result.animated) == (400, 300, False)


# --- colour and hashes ------------------------------------------------------------------------


def test_dominant_colour_of_mostly_red_image_is_red() -> None:
    img = Image.new("RGB", (300, 300), (220, 20, 30))
    ImageDraw.Draw(img).rectangle((0, 0, 99, 99), fill=(20, 200, 40))

    colour = process_image(encode(img, "PNG"), max_pixels=MAX_PIXELS).dominant_color

    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    assert colour.startswith("#") and colour == colour.lower() and len(colour) == 7
    assert red > 180 and green < 60 and blue < 60


def test_dominant_colour_ignores_transparent_pixels() -> None:
    img = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    ImageDraw.Draw(img).ellipse((60, 60, 140, 140), fill=(10, 30, 230, 255))

    colour = process_image(encode(img, "PNG"), max_pixels=MAX_PIXELS).dominant_color

    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    assert blue > 180 and red < 60 and green < 80


def test_similar_images_have_close_dhash() -> None:
    original = picture((640, 480))
    raw = encode(original, "JPEG", quality=95)
    similar = encode(original.resize((576, 432)), "JPEG", quality=60)
    different = encode(picture((640, 480), variant=1), "JPEG", quality=95)

    first, second, third = (
        process_image(data, max_pixels=MAX_PIXELS).phash for data in (raw, similar, different)
    )

    assert 0 <= first < 2**64
    assert hamming(first, second) <= 3
    assert hamming(first, third) > 10


def test_hamming_counts_differing_bits() -> None:
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(2**64 - 1, 0) == 64


# --- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "ratio"),
    [((1920, 1080), "16:9"), ((500, 500), "1:1"), ((6000, 4000), "3:2"), ((7, 3), "7:3")],
)
def test_aspect_ratio_reduces(size: tuple[int, int], ratio: str) -> None:
    assert aspect_ratio(*size) == ratio


def test_orientation() -> None:
    assert orientation(1920, 1080) == "landscape"
    assert orientation(1080, 1920) == "portrait"
    assert orientation(512, 512) == "square"


def test_resize_to_width_keeps_aspect() -> None:
    raw = encode(picture((800, 600)), "JPEG", quality=90)

    resized = Image.open(BytesIO(resize_to_width(raw, 200)))

    assert (resized.format, resized.size) == ("JPEG", (200, 150))


def test_resize_to_width_never_upscales() -> None:
    raw = encode(picture((300, 200)), "PNG")

    assert resize_to_width(raw, 300) is raw
    assert resize_to_width(raw, 1000) is raw


def test_resize_to_width_measures_the_upright_picture() -> None:
    raw = encode(picture((800, 400)), "JPEG", exif=gps_exif(orientation_tag=6))  # shown 400x800

    resized = Image.open(BytesIO(resize_to_width(raw, 100)))

    assert resized.size == (100, 200)
    assert 0x0112 not in resized.getexif()  # the turn is baked into the pixels


def test_resize_width_option_resizes_data_and_reports_new_size() -> None:
    raw = encode(picture((800, 600)), "PNG", exif=gps_exif())

    result = process_image(raw, max_pixels=MAX_PIXELS, resize_width=400)

    stored = Image.open(BytesIO(result.data))
    assert (stored.format, stored.size) == ("PNG", (400, 300))
    assert (result.width, result.height) == (400, 300)
    assert 0x8825 not in stored.getexif()


# --- large PNGs, decoded a strip at a time ----------------------------------------------------

PNG_MODES = ["RGB", "RGBA", "L", "LA", "P", "P with transparency"]


@pytest.fixture(params=[False, True], ids=["whole", "strips"])
def strips(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test with every PNG decoded whole, then with every PNG decoded in small strips."""
    if request.param:
        monkeypatch.setattr(imaging, "STRIP_MIN_PIXELS", 1)
        monkeypatch.setattr(imaging, "STRIP_BYTES", 50_000)
    return bool(request.param)


def png_in_mode(mode: str, size: tuple[int, int] = (2600, 900)) -> bytes:
    img = picture(size)
    if mode == "RGBA":
        img.putalpha(Image.linear_gradient("L").rotate(90).resize(size))
    elif mode == "LA":
        img = img.convert("L")
        img.putalpha(Image.linear_gradient("L").resize(size))
    elif mode.startswith("P"):
        img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    else:
        img = img.convert(mode)
    options = {"transparency": 0} if mode == "P with transparency" else {}
    return encode(img, "PNG", **options)


def processed_whole_and_in_strips(
    monkeypatch: pytest.MonkeyPatch, raw: bytes, **options: object
) -> tuple[object, object]:
    whole = process_image(raw, max_pixels=MAX_PIXELS, **options)  # type: ignore[arg-type]
    monkeypatch.setattr(imaging, "STRIP_MIN_PIXELS", 1)
    monkeypatch.setattr(imaging, "STRIP_BYTES", 50_000)  # 8 rows a strip: 113 strips
    in_strips = process_image(raw, max_pixels=MAX_PIXELS, **options)  # type: ignore[arg-type]
    return whole, in_strips


@pytest.mark.parametrize("mode", PNG_MODES)
def test_png_decoded_in_strips_gives_what_a_whole_decode_gives(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    raw = png_in_mode(mode)

    whole, in_strips = processed_whole_and_in_strips(monkeypatch, raw)

    assert in_strips == whole  # thumbnail bytes, hash and colour included


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_png_resized_in_strips_gives_what_a_whole_decode_gives(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    raw = png_in_mode(mode)

    whole, in_strips = processed_whole_and_in_strips(monkeypatch, raw, resize_width=700)

    assert in_strips == whole
    assert Image.open(BytesIO(in_strips.data)).size == (700, 242)  # type: ignore[attr-defined]


def test_png_with_a_colour_key_in_strips_hashes_like_a_whole_decode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Strips apply the colour key before scaling (the whole decode after), so pixels at the
    # key's edges differ a little; the picture does not.
    raw = encode(picture((2600, 900)), "PNG", transparency=(90, 90, 90))

    whole, in_strips = processed_whole_and_in_strips(monkeypatch, raw)

    assert hamming(in_strips.phash, whole.phash) <= 2  # type: ignore[attr-defined]
    assert Image.open(BytesIO(in_strips.thumbnail)).size == (360, 124)  # type: ignore[attr-defined]


def test_png_orientation_after_the_pixels_is_honoured(strips: bool) -> None:
    chunks = png_chunks(encode(picture(), "PNG", exif=gps_exif(orientation_tag=6)))
    exif = next(chunk for chunk in chunks if chunk[0] == b"eXIf")
    chunks.remove(exif)
    chunks.insert(-1, exif)  # just before IEND, as some writers put it

    result = process_image(png_of(chunks), max_pixels=MAX_PIXELS)

    assert (result.width, result.height) == (300, 400)
    thumb = Image.open(BytesIO(result.thumbnail))
    assert thumb.height > thumb.width


def grey_png(width: int, rows: list[bytes], *, stream: bytes | None = None) -> bytes:
    """A greyscale PNG of the given filtered rows (each led by its filter byte)."""
    ihdr = struct.pack(">IIBBBBB", width, len(rows), 8, 0, 0, 0, 0)
    data = zlib.compress(b"".join(rows)) if stream is None else stream
    return png_of([(b"IHDR", ihdr), (b"IDAT", data), (b"IEND", b"")])


def test_png_with_an_unknown_row_filter_is_refused(strips: bool) -> None:
    rows = [b"\x00" + bytes(range(200))] * 100
    rows[60] = b"\x09" + rows[60][1:]  # filters go from 0 to 4

    with pytest.raises(CorruptImage):
        process_image(grey_png(200, rows), max_pixels=MAX_PIXELS)


def test_png_with_broken_compressed_data_and_good_checksums_is_refused(strips: bool) -> None:
    stream = bytearray(zlib.compress(b"".join([b"\x00" + bytes(range(200))] * 100)))
    stream[2] = 0xFF  # the first deflate block claims the reserved block type

    with pytest.raises(CorruptImage):
        process_image(grey_png(200, [b""] * 100, stream=bytes(stream)), max_pixels=MAX_PIXELS)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
def test_damaged_pngs_are_refused_in_strips_too(strips: bool, mode: str) -> None:
    raw = png_in_mode(mode, (300, 200))
    flipped = bytearray(raw)
    flipped[-20] ^= 0xFF  # inside the last IDAT's CRC or data

    with pytest.raises(CorruptImage):
        process_image(raw[: len(raw) // 2], max_pixels=MAX_PIXELS)
    with pytest.raises(CorruptImage):
        process_image(bytes(flipped), max_pixels=MAX_PIXELS)


def test_png_whose_rows_run_out_is_refused_in_strips(monkeypatch: pytest.MonkeyPatch) -> None:
    # (Pillow's whole decode leaves the missing rows black; strips count them.)
    monkeypatch.setattr(imaging, "STRIP_MIN_PIXELS", 1)
    rows = [b"\x00" + bytes(range(200))] * 100
    raw = grey_png(200, rows, stream=zlib.compress(b"".join(rows[:90])))

    with pytest.raises(CorruptImage):
        process_image(raw, max_pixels=MAX_PIXELS)


def test_freed_memory_goes_back_after_a_large_image_even_a_refused_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(imaging, "_MALLOC_TRIM", calls.append)
    monkeypatch.setattr(imaging, "TRIM_MIN_PIXELS", 100_000)
    small, large = encode(picture((300, 200)), "PNG"), encode(picture((400, 300)), "PNG")

    process_image(small, max_pixels=MAX_PIXELS)
    assert calls == []
    process_image(large, max_pixels=MAX_PIXELS)
    with pytest.raises(CorruptImage):
        process_image(large[:-30], max_pixels=MAX_PIXELS)
    assert calls == [0, 0]
