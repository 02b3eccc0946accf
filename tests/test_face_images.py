"""Image files are read by their real bit depth, with transparency composited and EXIF orientation applied.

Every test writes a real file with Pillow and compares what is read with values computed here from the array
that was written.
"""
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from lrp_faces.errors import LRPFacesWarning
from lrp_faces.faces import DatasetError, FaceDataset, read_image

EIGHT_BIT = 1 / 255


def rgb(grey: np.ndarray) -> np.ndarray:
    """(H, W) -> (3, H, W): greyscale repeated over the channels."""
    return np.repeat(grey[None], 3, axis=0)


def read(path, size=None, **options) -> np.ndarray:
    size = size or Image.open(path).size[0]
    return read_image(path, size, **options).pixels.numpy()


def composite(colour: np.ndarray, alpha: np.ndarray, background) -> np.ndarray:
    """Straight alpha over an opaque background, channel-first, all in [0, 1]."""
    return colour * alpha + np.asarray(background, dtype=np.float64)[:, None, None] * (1 - alpha)


def write_png16(path, array: np.ndarray) -> None:
    """A 16-bit PNG written byte by byte (Pillow cannot write 16-bit colour): array (H, W, 3 or 4) uint16."""
    height, width, channels = array.shape
    header = struct.pack(">IIBBBBB", width, height, 16, {3: 2, 4: 6}[channels], 0, 0, 0)
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in array)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --- bit depth -----------------------------------------------------------------------------------------------------
def test_a_16_bit_grey_png_is_divided_by_65535(tmp_path, rng):
    values = rng.integers(0, 65536, (8, 8)).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    assert np.allclose(read(tmp_path / "grey16.png"), rgb(values / 65535), atol=1e-6)


def test_a_16_bit_grey_png_keeps_its_scale_when_resized(tmp_path):
    Image.fromarray(np.full((10, 20), 12345, np.uint16)).save(tmp_path / "flat16.png")
    assert np.allclose(read(tmp_path / "flat16.png", size=5), 12345 / 65535, atol=1e-6)


def test_16_bit_precision_survives_resizing(tmp_path):
    steps = np.repeat(np.arange(4, dtype=np.uint16) * 40 + 30000, 4)[None].repeat(16, 0)  # 4 steps under 1/255 apart
    Image.fromarray(steps).save(tmp_path / "steps16.png")
    pixels = read(tmp_path / "steps16.png", size=16)
    assert np.allclose(pixels, rgb(steps / 65535), atol=1e-6)
    assert len(np.unique(np.round(pixels[0, 0] * 65535))) == 4  # 8 bits would merge them


def test_an_8_bit_grey_png_is_divided_by_255(tmp_path, rng):
    values = rng.integers(0, 256, (8, 8)).astype(np.uint8)
    Image.fromarray(values).save(tmp_path / "grey8.png")
    assert np.allclose(read(tmp_path / "grey8.png"), rgb(values / 255), atol=1e-6)


def test_a_32_bit_integer_image_within_16_bits_is_divided_by_65535(tmp_path, rng):
    values = rng.integers(0, 65536, (8, 8)).astype(np.int32)
    Image.fromarray(values).save(tmp_path / "int32.tif")
    assert Image.open(tmp_path / "int32.tif").mode == "I"
    assert np.allclose(read(tmp_path / "int32.tif"), rgb(values / 65535), atol=1e-6)


def test_a_32_bit_integer_image_beyond_16_bits_is_an_error_naming_it(tmp_path):
    Image.fromarray(np.full((8, 8), 70000, np.int32)).save(tmp_path / "big.tif")
    with pytest.raises(DatasetError, match=r"big\.tif.*16-bit"):
        read(tmp_path / "big.tif")


def test_a_float_image_is_read_as_intensities(tmp_path, rng):
    values = rng.random((8, 8)).astype(np.float32)
    Image.fromarray(values).save(tmp_path / "float.tif")
    assert Image.open(tmp_path / "float.tif").mode == "F"
    assert np.allclose(read(tmp_path / "float.tif"), rgb(values), atol=1e-7)


def test_a_float_image_outside_0_1_is_an_error_naming_it(tmp_path):
    Image.fromarray(np.full((8, 8), 255.0, np.float32)).save(tmp_path / "float255.tif")
    with pytest.raises(DatasetError, match=r"float255\.tif.*\[0, 1\]"):
        read(tmp_path / "float255.tif")


def test_a_palette_png_is_looked_up(tmp_path, rng):
    palette = rng.integers(0, 256, (4, 3)).astype(np.uint8)
    indices = rng.integers(0, 4, (8, 8)).astype(np.uint8)
    image = Image.new("P", (8, 8))
    image.putpalette(palette.ravel().tolist())
    image.putdata(indices.ravel().tolist())
    image.save(tmp_path / "palette.png")
    assert Image.open(tmp_path / "palette.png").mode == "P"
    assert np.allclose(read(tmp_path / "palette.png"), palette[indices].transpose(2, 0, 1) / 255, atol=1e-6)


def test_a_16_bit_colour_png_is_read_at_8_bit_precision_on_the_right_scale(tmp_path, rng):
    values = rng.integers(0, 65536, (6, 6, 3)).astype(np.uint16)
    write_png16(tmp_path / "rgb16.png", values)
    assert np.allclose(read(tmp_path / "rgb16.png"), values.transpose(2, 0, 1) / 65535, atol=EIGHT_BIT)


def test_a_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    cyan, magenta, yellow, black = 20, 200, 60, 40
    Image.new("CMYK", (16, 16), (cyan, magenta, yellow, black)).save(tmp_path / "cmyk.jpg", quality=100)
    expected = [(1 - ink / 255) * (1 - black / 255) for ink in (cyan, magenta, yellow)]
    pixels = read(tmp_path / "cmyk.jpg")
    assert np.allclose(pixels.mean((1, 2)), expected, atol=0.02)  # JPEG is lossy


# --- transparency --------------------------------------------------------------------------------------------------
def rgba_file(path, rng, opaque=False):
    values = rng.integers(0, 256, (8, 8, 4)).astype(np.uint8)
    if opaque:
        values[..., 3] = 255
    Image.fromarray(values, mode="RGBA").save(path)
    return values.transpose(2, 0, 1) / 255


def test_rgba_is_composited_over_white_by_default(tmp_path, rng):
    values = rgba_file(tmp_path / "rgba.png", rng)
    loaded = read_image(tmp_path / "rgba.png", 8)
    assert loaded.composited
    assert np.allclose(loaded.pixels.numpy(), composite(values[:3], values[3], (1, 1, 1)), atol=EIGHT_BIT)


def test_rgba_is_composited_over_the_background_given(tmp_path, rng):
    values = rgba_file(tmp_path / "rgba.png", rng)
    background = (0.2, 0.4, 0.6)
    pixels = read(tmp_path / "rgba.png", alpha_background=background)
    assert np.allclose(pixels, composite(values[:3], values[3], background), atol=EIGHT_BIT)
    assert np.allclose(read(tmp_path / "rgba.png", alpha_background=0.0), values[:3] * values[3], atol=EIGHT_BIT)


def test_an_opaque_rgba_image_is_its_colour(tmp_path, rng):
    values = rgba_file(tmp_path / "opaque.png", rng, opaque=True)
    loaded = read_image(tmp_path / "opaque.png", 8)
    assert not loaded.composited and np.allclose(loaded.pixels.numpy(), values[:3], atol=1e-6)


def test_grey_with_alpha_is_composited(tmp_path, rng):
    values = rng.integers(0, 256, (8, 8, 2)).astype(np.uint8)
    Image.fromarray(values, mode="LA").save(tmp_path / "la.png")
    grey, alpha = values[..., 0] / 255, values[..., 1] / 255
    expected = composite(rgb(grey), alpha, (0.5, 0.5, 0.5))
    assert np.allclose(read(tmp_path / "la.png", alpha_background=0.5), expected, atol=EIGHT_BIT)


def test_a_palette_with_a_transparent_entry_is_composited(tmp_path):
    image = Image.new("P", (4, 4))
    image.putpalette([200, 10, 10, 10, 200, 10] + [0] * 762)
    image.putdata([0, 1] * 8)
    image.save(tmp_path / "keyed.png", transparency=1)
    pixels = read(tmp_path / "keyed.png", alpha_background=(0.0, 0.0, 1.0))
    assert np.allclose(pixels[:, 0, 0], np.array([200, 10, 10]) / 255, atol=1e-6)
    assert np.allclose(pixels[:, 0, 1], [0.0, 0.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("background", [(1.0, 1.0), (0.0, 0.0, 2.0), "white", True])
def test_a_bad_background_is_an_error(tmp_path, rng, background):
    rgba_file(tmp_path / "rgba.png", rng)
    with pytest.raises(DatasetError, match="alpha_background"):
        read(tmp_path / "rgba.png", alpha_background=background)


def _manifest(tmp_path, names):
    (tmp_path / "m.csv").write_text("path,identity\n" + "".join(f"{name},{name[0]}\n" for name in names))
    return tmp_path / "m.csv"


def test_a_data_set_warns_once_about_transparency(tmp_path, rng):
    for name in ("a1.png", "a2.png", "b1.png"):
        rgba_file(tmp_path / name, rng)
    dataset = FaceDataset.from_manifest(_manifest(tmp_path, ["a1.png", "a2.png", "b1.png"]), image_size=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for index in range(3):
            dataset.load_image(index)
        dataset.subset([2]).load_image(0)
    messages = [str(warning.message) for warning in caught if issubclass(warning.category, LRPFacesWarning)]
    assert len(messages) == 1 and "alpha_background=(1.0, 1.0, 1.0)" in messages[0], messages


def test_opaque_images_give_no_transparency_warning(tmp_path, rng):
    rgba_file(tmp_path / "a1.png", rng, opaque=True)
    dataset = FaceDataset.from_manifest(_manifest(tmp_path, ["a1.png"]), image_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset.load_image(0)


def test_a_data_set_composites_over_its_background(tmp_path, rng):
    values = rgba_file(tmp_path / "a1.png", rng)
    dataset = FaceDataset.from_manifest(_manifest(tmp_path, ["a1.png"]), image_size=8, alpha_background=0.0)
    with pytest.warns(LRPFacesWarning, match="transparent"):
        image = dataset[0][0]
    assert np.allclose(image.numpy(), values[:3] * values[3], atol=EIGHT_BIT)


# --- orientation ---------------------------------------------------------------------------------------------------
ROTATE_CLOCKWISE, ROTATE_ANTICLOCKWISE = 6, 8
"""EXIF orientation values: the stored image must be turned 90 degrees clockwise / anticlockwise to be upright."""


def oriented(path, values: np.ndarray, orientation: int, **options) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(values).save(path, exif=exif, **options)


@pytest.mark.parametrize("orientation, turns", [(ROTATE_CLOCKWISE, -1), (ROTATE_ANTICLOCKWISE, 1), (1, 0)])
def test_exif_orientation_is_applied(tmp_path, rng, orientation, turns):
    values = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
    oriented(tmp_path / "photo.png", values, orientation)
    upright = np.rot90(values, turns)  # np.rot90: positive turns are anticlockwise
    assert np.allclose(read(tmp_path / "photo.png"), upright.transpose(2, 0, 1) / 255, atol=1e-6)


def test_exif_orientation_of_a_jpeg_is_applied(tmp_path):
    values = np.zeros((16, 16, 3), np.uint8)
    values[:8, :, 0] = 255  # stored: red on top, blue below
    values[8:, :, 2] = 255
    oriented(tmp_path / "photo.jpg", values, ROTATE_CLOCKWISE, quality=100)
    pixels = torch.from_numpy(read(tmp_path / "photo.jpg"))
    assert pixels[0, 4:12, 10:].mean() > 0.9 and pixels[2, 4:12, :6].mean() > 0.9  # upright: red right, blue left
