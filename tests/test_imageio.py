import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps

from animegan2.errors import ImageError
from animegan2.imageio import (
    DecodedImage,
    encode_png16,
    from_tensor,
    load_image,
    save_image,
    to_tensor,
    to_uint8,
)
from tests.images import jpeg_bytes, png_declaring


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "empty file (0 bytes)"),
        (b"hello, I am a text file\n", "not an image"),
        (jpeg_bytes()[:400], "corrupt or truncated image"),
        (png_declaring(100_000, 100_000), "possible decompression bomb"),  # over 2x the limit: Pillow's error
        (png_declaring(10_000, 10_000), "possible decompression bomb"),  # over the limit: Pillow's warning
    ],
    ids=["empty", "text", "truncated-jpeg", "bomb", "bomb-warning-level"],
)
def test_bad_files_raise_one_clear_line(tmp_path, data, message):
    path = tmp_path / "bad.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageError) as info:
        load_image(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "nope.png")


def test_16bit_png_keeps_16_bits_and_metadata(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    alpha = rng.integers(0, 65536, (5, 7), dtype=np.uint16)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "Camera"
    path = tmp_path / "deep.png"
    save_image(DecodedImage(pixels, alpha, icc, exif.tobytes()), path)
    back = load_image(path)
    assert back.bit_depth == 16 and back.pixels.dtype == np.uint16
    assert np.array_equal(back.pixels, pixels) and np.array_equal(back.alpha, alpha)
    assert back.icc_profile == icc and Image.open(path).getexif()[0x010F] == "Camera"


def test_16bit_grayscale_png(tmp_path):
    gray = np.array([[0, 1000], [40000, 65535]], np.uint16)
    Image.fromarray(gray).save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.pixels.dtype == np.uint16 and img.alpha is None
    assert np.array_equal(img.pixels, np.dstack([gray] * 3))


def test_cmyk_jpeg_becomes_rgb_without_the_cmyk_profile(tmp_path):
    Image.new("CMYK", (6, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)
    img = load_image(tmp_path / "c.jpg")
    assert img.pixels.shape == (4, 6, 3) and img.pixels.dtype == np.uint8 and img.icc_profile is None
    red = img.pixels.reshape(-1, 3).mean(0)
    assert red[0] > 240 and red[1] < 15 and red[2] < 15


def test_rgba_png_alpha_is_kept_apart(tmp_path):
    rgba = np.random.default_rng(2).integers(0, 256, (3, 4, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert np.array_equal(img.pixels, rgba[..., :3]) and np.array_equal(img.alpha, rgba[..., 3])


def test_palette_gif_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (4, 2))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "p.gif")
    img = load_image(tmp_path / "p.gif")
    assert img.alpha is None and img.pixels[0, 0].tolist() == [255, 0, 0] and img.pixels[0, 1].tolist() == [0, 0, 255]
    pal.save(tmp_path / "t.gif", transparency=1)
    img = load_image(tmp_path / "t.gif")
    assert img.alpha[0].tolist() == [255, 0, 255, 255]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_as_pillow_does(tmp_path, orientation):
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    exif[0x010F] = "Camera"
    image.save(tmp_path / "o.png", exif=exif.tobytes())
    got = load_image(tmp_path / "o.png")
    want = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    assert np.array_equal(got.pixels, want)
    kept = Image.Exif()
    kept.load(got.exif)
    assert kept.get(0x0112, 1) == 1 and kept[0x010F] == "Camera"


def test_exif_rotated_jpeg(tmp_path):
    image = Image.new("RGB", (40, 16), (200, 30, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 clockwise on display
    image.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "r.jpg").pixels.shape == (40, 16, 3)


def test_save_is_atomic_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    img = DecodedImage(np.zeros((2, 2, 3), np.uint8))
    save_image(img, tmp_path / "sub" / "ok.jpg")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["ok.jpg"]

    def broken(fd, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("animegan2.imageio.os.fsync", broken)
    with pytest.raises(ImageError, match="cannot write: No space left on device"):
        save_image(img, tmp_path / "sub" / "new.png")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["ok.jpg"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageError, match="cannot write"):
        save_image(img, tmp_path / "file" / "out.png")


def test_formats_drop_what_they_cannot_hold(tmp_path):
    rgba = DecodedImage(np.full((2, 2, 3), 65535, np.uint16), np.zeros((2, 2), np.uint16))
    save_image(rgba, tmp_path / "x.jpg")
    assert Image.open(tmp_path / "x.jpg").mode == "RGB"
    with pytest.raises(ImageError, match="unknown output format '.xyz'"):
        save_image(rgba, tmp_path / "x.xyz")
    stream = io.BytesIO()
    save_image(rgba, stream, format="png")
    assert load_image(stream.getvalue()).bit_depth == 16


def test_png16_chunks_are_valid():
    data = encode_png16(np.array([[[1, 2, 65535]]], np.uint16))
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[24:26] == bytes([16, 2])
    assert np.array_equal(load_image(data).pixels, [[[1, 2, 65535]]])


def test_tensor_conversion_hand_computed():
    x = to_tensor(np.array([[[0, 255, 51]]], np.uint8))
    assert x.shape == (1, 3, 1, 1) and x.flatten().tolist() == pytest.approx([-1.0, 1.0, -0.6])
    assert to_tensor(np.array([[[0, 65535, 0]]], np.uint16)).flatten().tolist() == [-1.0, 1.0, -1.0]
    assert to_tensor(np.array([[[0.0, 0.25, 1.0]]])).flatten().tolist() == [-1.0, -0.5, 1.0]
    y = torch.tensor([-1.0, -0.5, 0.999, 2.0]).view(1, 4, 1, 1)[:, :3]
    # (x + 1) / 2 * 255, clipped, truncated: 0, 63.75 -> 63, 254.87 -> 254
    assert from_tensor(y).flatten().tolist() == [0, 63, 254]
    assert from_tensor(y, np.uint16).flatten().tolist() == [0, 16383, 65502]
    assert from_tensor(y, np.float32).flatten().tolist() == pytest.approx([0.0, 0.25, 0.9995])
    assert to_uint8(np.array([0, 128, 257, 65535], np.uint16)).tolist() == [0, 0, 1, 255]


def test_16bit_tiff_round_trip(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    save_image(DecodedImage(pixels), tmp_path / "d.tif")
    back = load_image(tmp_path / "d.tif")
    assert back.bit_depth == 16 and np.array_equal(back.pixels, pixels)


def test_16bit_png_orientation_is_applied_once(tmp_path):
    pixels = np.arange(2 * 3 * 3, dtype=np.uint16).reshape(2, 3, 3) * 1000
    exif = Image.Exif()
    exif[0x0112] = 6
    save_image(DecodedImage(pixels, exif=exif.tobytes()), tmp_path / "r.png")
    got = load_image(tmp_path / "r.png")
    assert got.bit_depth == 16 and np.array_equal(got.pixels, np.rot90(pixels, -1)) and got.exif is None
