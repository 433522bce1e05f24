"""The aorta patient's bowel: the colon and small-bowel loops, drawn only where the abdominal fat is free.

The colon runs caecum, ascending, hepatic flexure, transverse, splenic flexure, descending, sigmoid
to the rectum just in front of the sacrum, with mottled gas in its stool, more of it toward the
front. Small-bowel loops are tubes where two smooth random fields are both near zero, in front of
the retroperitoneum (clear of the spine and, with mesenteric fat, of the aorta), some holding gas.
The random fields live on a fixed 4 mm lattice (:data:`BOWEL_LATTICE_MM`), so they do not depend on
the grid, and come from the bowel's own random stream.
"""

from __future__ import annotations

import numpy as np

from DigitalContrastLib.ct.labels import LABELS

from ..canvas import Box, Canvas, Grid, uniform
from .body import BodyOnGrid
from .layout import FINE_Z, AortaLayout, Bowel, Levels, Spine

BOWEL_LATTICE_MM = 4.0


def sample_bowel(rng: np.random.Generator, levels: Levels, spine: Spine) -> Bowel:
    """The colon's path and radii, and the random fields of the loops and the gas (float32, unit SD)."""
    from scipy.ndimage import gaussian_filter

    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    z_bif, z_renal = levels.z_bif, levels.z_renal
    # random fields on a fixed 4 mm lattice (grid independent): two for the loops, one for their
    # gas, a finer one for the stool's mottled gas
    step = BOWEL_LATTICE_MM
    lo = np.array([-180.0, -180.0, z_bif - 240])
    shape = (int(480 // step) + 1, int(360 // step) + 1, int(360 // step) + 1)  # z, y, x
    corr = u(7.5, 9.5)  # mm
    fields = rng.standard_normal((4,) + shape).astype(np.float32)
    for k in range(4):
        fields[k] = gaussian_filter(fields[k], corr / step if k < 3 else 1.2, mode="wrap")
        fields[k] /= fields[k].std()

    # colon: caecum, ascending, hepatic flexure, transverse, splenic flexure, descending, sigmoid, rectum
    zr = z_renal
    path = np.array([
        [-70, -25, z_bif - 55], [-88, -10, z_bif + 10], [-88, -5, zr - 15], [-68, -45, zr + 5],
        [-30, -85, zr - 25], [25, -85, zr - 20], [75, -30, zr + 45], [92, 5, zr + 5], [88, 5, z_bif - 15],
        [60, -35, z_bif - 65], [15, -40, z_bif - 95], [0, 0, z_bif - 120], [0, 0, z_bif - 220],
    ], dtype=float)
    path[:, :2] += rng.uniform(-8, 8, (len(path), 2))
    path[:, 2] += rng.uniform(-8, 8, len(path))
    # rectum just in front of the sacrum
    for k in (-2, -1):
        path[k, 1] = float(np.interp(path[k, 2], FINE_Z, spine.y_line)) - u(40, 50)
    r_colon = np.array([26, 24, 22, 21, 20, 20, 20, 18, 17, 16, 15, 15, 15]) * u(0.85, 1.1)
    loop_threshold, gas_threshold = u(1.6, 2.2), u(1.2, 1.6)
    return Bowel(correlation=corr, origin=lo, fields=fields, colon_path=path, colon_radii=r_colon,
                 loop_threshold=loop_threshold, gas_threshold=gas_threshold)


def in_peritoneum(layout: AortaLayout, grid: Grid, box: Box) -> np.ndarray:
    """In front of the retroperitoneum: clear of the spine and, with mesenteric fat, of the aorta."""
    zq = grid.z[box.z_index]
    front = layout.spine.front(zq)[:, None, None]
    reach = (2 * np.interp(zq, FINE_Z, layout.aorta.outer) + 10)[:, None, None]
    x_ao = np.interp(zq, FINE_Z, layout.aorta.cx)[:, None, None]
    return box.Y < front + 10 - reach * np.exp(-(((box.X - x_ao) / 40.0) ** 2))


def _fields_at(grid: Grid, bowel: Bowel, zone: Box, mask: np.ndarray,
               channels) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Indices of ``mask`` in ``zone`` and the bowel's fields ``channels`` interpolated there."""
    from scipy.ndimage import map_coordinates

    lo, step = bowel.origin, BOWEL_LATTICE_MM
    index = np.nonzero(mask)
    coords = np.stack([(grid.z[zone.sl[0]][index[0]] - lo[2]) / step,
                       (grid.y[zone.sl[1]][index[1]] - lo[1]) / step,
                       (grid.x[zone.sl[2]][index[2]] - lo[0]) / step])
    return index, np.stack([map_coordinates(bowel.fields[k], coords, order=1, mode="nearest") for k in channels])


def paint_bowel(canvas: Canvas, layout: AortaLayout, body: BodyOnGrid) -> None:
    """The colon over the fat, then small-bowel loops with gas in the free fat, then the colon's gas."""
    grid = canvas.grid
    bowel = layout.bowel
    z_bif, z_renal = layout.levels.z_bif, layout.levels.z_renal
    colon_zone = grid.box((-170, -200, z_bif - 240), (170, 120, z_bif + 240))
    before = canvas.labels[colon_zone.sl] != LABELS["bowel"] if colon_zone is not None else None
    canvas.polyline(bowel.colon_path, bowel.colon_radii, "bowel", over=("fat",), clip=body.in_cavity)
    colon = (canvas.labels[colon_zone.sl] == LABELS["bowel"]) & before if colon_zone is not None else None

    zone = grid.box((-170, -200, z_bif - 140), (170, 120, z_renal + 10))
    if zone is not None:
        # small-bowel loops: tubes where two smooth fields are both near zero; gas in some of them
        sub = canvas.labels[zone.sl]
        free = (sub == LABELS["fat"]) & body.in_cavity(zone, 5.0) & in_peritoneum(layout, grid, zone)
        index, f = _fields_at(grid, bowel, zone, free, (0, 1, 2))
        tubes = f[0] * f[0] + f[1] * f[1]
        loops = tubes < bowel.loop_threshold
        sub[tuple(i[loops] for i in index)] = LABELS["bowel"]
        y_mm = grid.y[zone.sl[1]][index[1]]
        gas = loops & (tubes < 0.35) & (f[2] - 0.02 * (y_mm + 60) > bowel.gas_threshold)
        sub[tuple(i[gas] for i in index)] = LABELS["bowel_gas"]
    if colon_zone is not None:
        # the colon, caecum to rectum: mottled gas in the stool, more of it toward the front
        sub = canvas.labels[colon_zone.sl]
        index, f = _fields_at(grid, bowel, colon_zone, colon, (2, 3))
        gas = f[1] + 0.6 * f[0] - 0.01 * (grid.y[colon_zone.sl[1]][index[1]] + 40) > 0.9
        sub[tuple(i[gas] for i in index)] = LABELS["bowel_gas"]


def bowel_params(bowel: Bowel) -> dict:
    return {"colon_path_mm": np.round(bowel.colon_path, 1).tolist(),
            "colon_radius_mm": np.round(bowel.colon_radii, 1).tolist(),
            "loop_correlation_mm": bowel.correlation, "loop_threshold": bowel.loop_threshold,
            "gas_threshold": bowel.gas_threshold}
