"""The postprocess (a model-grid residual back onto the input grid, int16): the same output, voxel
for voxel, as the slab loop it replaced (issue 31), on a phantom, in every orientation and path.

:func:`_reference_model_grid_to_input` is the loop as it stood before the rework (one slab of 8 at a
time, torch's own threads, each slab clamping the residual and checking the int16 headroom for
itself): the specification the reworked :func:`model_grid_to_input` must reproduce exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DigitalContrastLib.phantoms.generator import make_phantom
from DigitalContrastLib.synthesis.grid import (
    _INT16_HEADROOM,
    _RESIDUAL_LIMIT_HU,
    _inplane_resample,
    _slab_ranges,
    axis_weights,
    canonical_orientation,
    empty_int16_volume,
    model_grid_shape,
    model_grid_to_input,
    resample_rows,
)
from DigitalContrastLib.synthesis.slab_threads import run_slabs


def _reference_model_grid_to_input(values, out, base_hu=None, threshold_hu=-500.0, slab=8):
    """The postprocess before issue 31 (kept verbatim as the reference)."""
    nz, ny, nx = out.shape
    values = values.float()
    weights = axis_weights(values.shape[0], nz)
    info = np.iinfo(out.dtype) if np.issubdtype(out.dtype, np.integer) else None
    for rows in _slab_ranges(nz, slab):
        block = _inplane_resample(resample_rows(values, weights, rows), (ny, nx))
        if base_hu is not None:
            base = torch.from_numpy(np.ascontiguousarray(base_hu[rows.start: rows.stop]))
            if base.dtype == torch.int16 and out.dtype == np.int16 and int(base.abs().max()) < _INT16_HEADROOM:
                step = block.round_().clamp_(-_RESIDUAL_LIMIT_HU, _RESIDUAL_LIMIT_HU).to(torch.int16)
                step.masked_fill_(base <= threshold_hu, 0)
                target = out[rows.start: rows.stop]
                if all(stride > 0 for stride in target.strides):
                    torch.add(base, step, out=torch.from_numpy(target))
                else:
                    target[...] = (base + step).numpy()
                continue
            base_f = base.to(torch.float32)
            block = torch.where(base > threshold_hu, base_f + block.clamp_(-_RESIDUAL_LIMIT_HU, _RESIDUAL_LIMIT_HU), base_f)
        if info is not None:
            block = block.round_().clamp_(info.min, info.max)
        out[rows.start: rows.stop] = block.numpy().astype(out.dtype, copy=False)


@pytest.fixture(scope="module")
def phantom():
    """A small phantom's non-contrast scan (the bench volume's kind, 2 mm voxels, int16 HU)."""
    return make_phantom(0, size_xyz=(96, 80, 50), spacing_xyz_mm=(3.6, 3.6, 4.0)).noncontrast


def _residual_hu(grid_zyx, seed=0, scale=120.0, half_steps=True):
    """A smooth model-grid residual in HU; with ``half_steps`` many values sit on x.5 exactly, where
    rounding after the add and before it differ (the int16 and float paths)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn((max(2, grid_zyx[0] // 4), max(2, grid_zyx[1] // 4), max(2, grid_zyx[2] // 4)), generator=generator)
    values = torch.nn.functional.interpolate(coarse[None, None], size=tuple(grid_zyx), mode="trilinear")[0, 0] * scale
    if half_steps:
        values[::3] = torch.round(values[::3]) + 0.5
    return values


def _both(volume_array, direction, values, threshold_hu=-500.0, sd=False, workers=None):
    """(reworked, reference) outputs for one input array seen through ``direction``."""
    orientation = canonical_orientation(direction)
    canonical = orientation.to_canonical(volume_array)
    outputs = []
    for function in (lambda v, o, **k: model_grid_to_input(v, o, workers=workers, **k), _reference_model_grid_to_input):
        out = empty_int16_volume(volume_array.shape) if not sd else np.zeros(volume_array.shape, np.int16)
        view = orientation.to_canonical(out)
        if sd:
            function(values.clone(), view)
        else:
            function(values.clone(), view, base_hu=canonical, threshold_hu=threshold_hu)
        outputs.append(out)
    return outputs


def _grid(volume, direction):
    orientation = canonical_orientation(direction)
    shape = orientation.to_canonical(volume.array).shape
    return model_grid_shape(shape, orientation.spacing_zyx(volume.spacing_mm), (5.0, 5.0, 5.0))


@pytest.mark.parametrize("direction", [
    (1, 0, 0, 0, 1, 0, 0, 0, 1),        # LPS as stored: the canonical view is the array itself
    (-1, 0, 0, 0, -1, 0, 0, 0, 1),      # RAS-like in-plane: negative strides, written through a copy
    (0, 1, 0, 1, 0, 0, 0, 0, -1),       # x and y swapped, z reversed: a transposed, flipped view
])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_same_output_as_the_slab_loop_it_replaced(phantom, direction, workers):
    values = _residual_hu(_grid(phantom, direction))
    new, old = _both(phantom.array, direction, values, workers=workers)
    assert np.array_equal(new, old)
    body = phantom.array > -500
    assert np.abs(new.astype(int) - phantom.array)[body].mean() > 20, "the residual never reached the body"
    np.testing.assert_array_equal(new[~body], phantom.array[~body])


def test_same_output_where_the_residual_reaches_its_clamp(phantom):
    direction = (1, 0, 0, 0, 1, 0, 0, 0, 1)
    grid = _grid(phantom, direction)
    values = _residual_hu(grid, scale=900.0)
    centre = tuple(n // 2 for n in grid)
    values[centre[0] - 2: centre[0] + 2, centre[1] - 3: centre[1] + 3, centre[2] - 3: centre[2] + 3] = 9000.0
    values[centre[0] + 5, centre[1], centre[2]] = -7000.0  # beyond the ±4096 HU limit: clamped
    new, old = _both(phantom.array, direction, values)
    assert np.array_equal(new, old)
    body = phantom.array > -500
    assert (new.astype(int) - phantom.array)[body].max() == _RESIDUAL_LIMIT_HU


def test_same_output_where_some_slabs_need_the_float_path(phantom):
    """An input above the int16 headroom in a few slices (and -32768 padding in others): those slabs
    take the float path, which saturates at 32767 instead of wrapping, the rest the int16 one."""
    direction = (1, 0, 0, 0, 1, 0, 0, 0, 1)
    grid = _grid(phantom, direction)
    array = phantom.array.copy()
    z, y, x = (n // 2 for n in array.shape)
    array[z: z + 2, y - 4: y + 4, x - 4: x + 4] = 30000
    array[3, :3, :3] = -32768
    values = _residual_hu(grid)
    values[:, grid[1] // 2 - 3: grid[1] // 2 + 3, grid[2] // 2 - 3: grid[2] // 2 + 3] = 3000.5
    new, old = _both(array, direction, values)
    assert np.array_equal(new, old)
    assert new[z: z + 2, y - 2: y + 2, x - 2: x + 2].min() == 32767  # saturated, not wrapped
    assert new[3, 0, 0] == -32768


def test_same_output_with_a_fractional_threshold_and_for_the_sd_map(phantom):
    direction = (-1, 0, 0, 0, -1, 0, 0, 0, 1)
    values = _residual_hu(_grid(phantom, direction))
    new, old = _both(phantom.array, direction, values, threshold_hu=-499.5)
    assert np.array_equal(new, old)
    new, old = _both(phantom.array, direction, values.abs(), sd=True)
    assert np.array_equal(new, old) and new.max() > 0


def test_slabs_run_on_one_torch_thread_each_and_errors_surface():
    before = torch.get_num_threads()
    seen = []

    def work(rows):
        seen.append((rows.start, torch.get_num_threads()))

    run_slabs(work, _slab_ranges(40, 4), workers=2)
    assert sorted(start for start, _ in seen) == list(range(0, 40, 4))
    assert {threads for _, threads in seen} == {1}
    assert torch.get_num_threads() == before

    def failing(rows):
        if rows.start == 8:
            raise ValueError("slab 8 failed")

    with pytest.raises(ValueError, match="slab 8"):
        run_slabs(failing, _slab_ranges(40, 4), workers=2)
    assert torch.get_num_threads() == before
