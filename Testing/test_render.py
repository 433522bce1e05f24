"""Pictures: windowing, slice orientation and aspect, panel grids, atomic PNGs, phantom preview."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from DigitalContrastLib.ct import render
from DigitalContrastLib.ct.labels import LABEL_COLORS, LABELS
from DigitalContrastLib.ct.volume import CTVolume
from DigitalContrastLib.phantoms.generator import make_phantom
from DigitalContrastLib.phantoms.preview import phantom_preview


def test_window_maps_the_window_edges_to_black_and_white():
    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0])
    out = render.window_to_uint8(hu, 400, 40)
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 0, 128, 255, 255]
    with pytest.raises(ValueError):
        render.window_to_uint8(hu, 0, 40)


def marker_volume(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> CTVolume:
    """A 10 x 20 x 30 (z, y, x) volume, 1 x 1 x 4 mm, with one bright voxel at the patient's
    left (high x), anterior (low y), superior (high z) corner, stored along ``direction``."""
    array = np.zeros((10, 20, 30), np.int16)
    array[9, 0, 29] = 1000  # LPS: x = left, y = anterior, z = superior
    d = np.asarray(direction, float).reshape(3, 3)
    # flip the stored axes whose direction is reversed, so the anatomy stays the same
    for c in range(3):
        if d[c, c] < 0:
            array = np.flip(array, axis=2 - c)
    return CTVolume(np.ascontiguousarray(array), spacing_mm=(1.0, 1.0, 4.0), direction=direction)


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, 1), (1, 0, 0, 0, 1, 0, 0, 0, -1)])
def test_axial_and_coronal_are_radiological_and_keep_the_aspect(direction):
    volume = marker_volume(direction)
    z_index = 9 if direction[8] > 0 else 0
    y_index = 0 if direction[4] > 0 else 19
    ax = render.axial(volume, z_index)
    co = render.coronal(volume, y_index)
    assert ax.shape == (20, 30)  # 1 mm pixels already square
    assert co.shape == (40, 30)  # 10 slices of 4 mm -> 40 rows of 1 mm
    # anterior at the top, the patient's left on the image's right (radiological convention)
    r, c = np.unravel_index(np.argmax(ax), ax.shape)
    assert r == 0 and c == 29
    # superior at the top of the coronal view
    r, c = np.unravel_index(np.argmax(co), co.shape)
    assert r < 4 and c == 29


def test_nearest_resampling_keeps_label_codes():
    labels = np.zeros((6, 8, 8), np.int16)
    labels[2:4, 2:6, 2:6] = LABELS["aortic_lumen"]
    labels[2:4, 3:5, 3:5] = LABELS["thrombus"]
    volume = CTVolume(labels, spacing_mm=(1.0, 1.0, 3.3))
    co = render.coronal(volume, 3, nearest=True)
    assert set(np.unique(co).tolist()) <= {0, 10, 11}
    rgb = render.colorize_labels(co, LABEL_COLORS)
    assert rgb.shape == co.shape + (3,) and rgb.dtype == np.uint8
    assert tuple(rgb[co == 10][0]) == LABEL_COLORS[10]


def test_panel_grid_lays_out_titled_panels():
    grey = np.full((50, 80), 200, np.uint8)
    rgb = np.zeros((100, 100, 3), np.uint8)
    rgb[..., 0] = 255
    image = render.panel_grid([[("first", grey), ("second", rgb)], [("third", grey)]], panel_height=100,
                              title_height=20, gap=4, footer="footer text")
    assert image.mode == "RGB"
    assert image.width == 4 + 160 + 4 + 100 + 4  # the grey panel scaled to 100 rows keeps its aspect
    assert image.height == 4 + 120 + 4 + 120 + 4 + 20
    pixels = np.asarray(image)
    assert pixels[4:24, 4:164].max() > 100  # the title is drawn above the first panel
    assert tuple(pixels[24 + 50, 4 + 164 + 4 + 50]) == (255, 0, 0)  # the red panel is where it should be


def test_save_png_is_atomic_and_readable(tmp_path):
    image = Image.new("RGB", (10, 6), (1, 2, 3))
    path = render.save_png(image, tmp_path / "sub" / "picture.png")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["picture.png"]
    with Image.open(path) as back:
        assert back.size == (10, 6) and back.getpixel((0, 0)) == (1, 2, 3)


def test_phantom_preview_shows_both_scans_and_the_labels(tmp_path):
    case = make_phantom(2, size_xyz=(128, 128, 64), spacing_xyz_mm=(2.8, 2.8, 5.0))
    image = phantom_preview(case)
    assert image.mode == "RGB" and image.width > 900 and image.height > 600
    pixels = np.asarray(image).reshape(-1, 3)
    colours = {tuple(p) for p in np.unique(pixels, axis=0)}
    for name in ("aortic_lumen", "liver", "bowel", "fat"):
        assert LABEL_COLORS[LABELS[name]] in colours, name
    path = render.save_png(image, tmp_path / "preview.png")
    assert path.stat().st_size > 10_000
