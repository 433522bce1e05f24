"""The aorta patient's body: outline, subcutaneous fat, abdominal wall and skin, trunk muscles, diaphragm.

The outline is two half-ellipses per slice (half-width ``a``, front and back half-depths) whose
diagonals bulge by the fraction ``square`` (fuller flanks), cut flat at the back; the abdomen
grows with the fat (habitus) and the outline stays within a 340 mm field of view, wider and
shallower over the pelvis. Inside it: subcutaneous fat (thicker in front), the abdominal wall
(obliques thickest laterally with thin fat planes between them, rectus in front with the linea
alba, thin at the back), 2 mm of skin; psoas, quadratus lumborum and erector spinae; the
diaphragm's two domes with deep posterior recesses and the lung bases above them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from DigitalContrastLib.ct.labels import LABELS

from ..canvas import Box, Canvas, Grid, smooth_noise_1d, smoothstep, uniform
from .layout import FINE_Z, AortaLayout, Body, Levels, Muscles


@dataclass(frozen=True)
class BodyOnGrid:
    """The body voxelised on the canvas's grid."""

    outline: dict[str, np.ndarray]  # per grid slice (float32, mm): a, b_ant, b_post, yc, y_back, square
    depth: np.ndarray  # float32 [z, y, x]: approximate depth below the skin (mm), negative outside
    cavity_margin: float  # depth (mm) where the cavity begins

    def in_cavity(self, box: Box, extra: float = 0.0) -> np.ndarray:
        """Voxels of ``box`` inside the abdominal and thoracic cavity, ``extra`` mm deeper than its margin."""
        return self.depth[box.sl] > self.cavity_margin + extra


def sample_body(rng: np.random.Generator, levels: Levels) -> Body:
    """The body outline along :data:`FINE_Z`."""
    u = lambda lo, hi: uniform(rng, lo, hi)  # noqa: E731
    Zf = FINE_Z
    z_bif, z_renal = levels.z_bif, levels.z_renal
    t_fat0 = u(8, 32)
    # the abdomen grows with the fat (habitus); the outline stays within a 340 mm field of view
    a0, b_ant0, b_post0 = u(130, 150) + 0.5 * t_fat0, u(112, 135) + 0.6 * t_fat0, u(88, 102)
    t_muscle = u(8, 13)
    # outline half-axes along z (fine lattice): wider and shallower over the pelvis
    pelvis_f = smoothstep((z_bif + 30 - Zf) / 90.0)
    chest_f = smoothstep((Zf - (z_renal + 60)) / 120.0)
    wobble_f = 1 + 0.02 * smooth_noise_1d(rng, len(Zf), 40.0)
    body_f = {
        "a": a0 * (1 + 0.06 * pelvis_f - 0.03 * chest_f) * wobble_f,
        "b_ant": b_ant0 * (1 - 0.12 * pelvis_f + 0.02 * chest_f) * wobble_f,
        "b_post": np.full(len(Zf), b_post0),
        "yc": np.zeros(len(Zf)),
    }
    body_f["y_back"] = body_f["yc"] + 0.93 * body_f["b_post"]
    square = u(-0.01, 0.06)
    body_f["square"] = np.full(len(Zf), square)
    return Body(fat=t_fat0, half_width=a0, front_half_depth=b_ant0, back_half_depth=b_post0, wall_muscle=t_muscle,
                squareness=square, outline=body_f, chest_weight=chest_f)


def sample_muscles(rng: np.random.Generator) -> Muscles:
    """The erector spinae's width and the psoas profile's factor."""
    erector_w = uniform(rng, 50, 62)
    return Muscles(erector_width=erector_w, psoas_scale=uniform(rng, 0.85, 1.15))


def _depth_below_skin(grid: Grid, body: dict[str, np.ndarray]) -> tuple[np.ndarray, Box | None, np.ndarray]:
    """Approximate depth below the skin (mm, float32, negative outside) for every voxel, the box
    that holds the body, and there the anteroposterior position ``s`` (-1 front ... +1 back).

    The outline is two half-ellipses (half-width ``a``, front and back half-depths) whose
    diagonals bulge by the fraction ``square`` (fuller flanks), cut flat at the back (``y_back``).
    """
    depth = np.full(grid.shape_zyx, -1000.0, np.float32)
    reach_x = float(body["a"].max())
    box = grid.box((-reach_x, float((body["yc"] - body["b_ant"]).min()), -1e9),
                   (reach_x, float(body["y_back"].max()), 1e9))
    if box is None:
        return depth, None, np.zeros((0, 0, 0), np.float32)
    zi = box.z_index
    a = body["a"][zi][:, None, None]
    yy = box.Y - body["yc"][zi][:, None, None]
    b = np.where(yy < 0, body["b_ant"][zi][:, None, None], body["b_post"][zi][:, None, None]).astype(np.float32)
    ex = (box.X / a).astype(np.float32)
    ey = yy / b
    r2 = np.maximum(ex * ex + ey * ey, 1e-6)
    cos4 = 1.0 - 8.0 * (ex * ey) ** 2 / (r2 * r2)
    r = np.sqrt(r2) / (1.0 + body["square"][zi][:, None, None].astype(np.float32) * 0.5 * (1.0 - cos4))
    r_safe = np.maximum(r, 1e-3)
    local = np.sqrt(box.X * box.X + yy * yy) / r_safe  # the outline's radius along this direction
    inner = (1.0 - r) * local
    np.minimum(inner, (body["y_back"][zi][:, None, None] - box.Y).astype(np.float32), out=inner)
    depth[box.sl] = inner
    s_ap = np.clip(ey / np.sqrt(r2), -1, 1).astype(np.float32)
    return depth, box, s_ap


def paint_body(canvas: Canvas, body: Body) -> BodyOnGrid:
    """Fat inside the outline, the abdominal wall's muscles with fat planes between them, the skin."""
    gz = canvas.grid.z
    outline = {key: np.interp(gz, FINE_Z, value).astype(np.float32) for key, value in body.outline.items()}
    depth, bbox, s_ap = _depth_below_skin(canvas.grid, outline)
    if bbox is not None:
        t_fat0, t_muscle = body.fat, body.wall_muscle
        sub = canvas.labels[bbox.sl]
        d = depth[bbox.sl]
        inside = d > 0
        sub[inside] = LABELS["fat"]
        t_fat = t_fat0 * (1.0 - 0.3 * s_ap)
        # abdominal wall: obliques thickest laterally, rectus in front (linea alba between), thin at the back
        t_wall = t_muscle * (1 + 0.4 * (1 - np.abs(s_ap)) - 0.6 * np.clip((s_ap - 0.3) / 0.7, 0, 1))
        wall = inside & (d > t_fat) & (d <= t_fat + t_wall) & ~((s_ap < -0.8) & (np.abs(bbox.X) < 4))
        sub[wall] = LABELS["muscle"]
        # thin fat planes between the external oblique, internal oblique and transversus laterally
        layer = (d - t_fat) / t_wall
        half = 0.8 / t_wall
        planes = wall & (np.abs(s_ap) < 0.6) & ((np.abs(layer - 0.38) < half) | (np.abs(layer - 0.7) < half))
        sub[planes] = LABELS["fat"]
        sub[inside & (d <= 2.0)] = LABELS["soft_tissue"]  # skin
    return BodyOnGrid(outline=outline, depth=depth, cavity_margin=body.cavity_margin)


def psoas_radius(levels: Levels, muscles: Muscles, z: np.ndarray) -> np.ndarray:
    """The psoas radius (mm) at ``z``: growing caudally from L1, 0 above it."""
    z_bif, pitch = levels.z_bif, levels.pitch
    psoas_r = np.clip(6 + 16 * smoothstep((z_bif + 4 * pitch - z) / (4.5 * pitch)), 0, 24) * muscles.psoas_scale
    return np.where(z > z_bif + 4.3 * pitch, 0, psoas_r)


def paint_trunk_muscles(canvas: Canvas, layout: AortaLayout, body: BodyOnGrid) -> None:
    """Psoas (beside the vertebral bodies, growing caudally, then lateral into the pelvis),
    quadratus lumborum (lumbar levels) and erector spinae (in each gutter beside the spinous processes)."""
    grid = canvas.grid
    gz = grid.z
    levels, spine = layout.levels, layout.spine
    z_bif, pitch, z_s1 = levels.z_bif, levels.pitch, levels.z_s1
    vb_a0, vb_b0 = spine.body_half_width, spine.body_half_depth
    t_fat0, t_muscle = layout.body.fat, layout.body.wall_muscle
    x_spine, y_spine = spine.x_at(gz), spine.y_at(gz)
    chest = np.interp(gz, FINE_Z, layout.body.chest_weight)
    erector_w = layout.muscles.erector_width
    psoas_r = psoas_radius(levels, layout.muscles, gz)
    for side in (-1, 1):
        box = grid.box((-140, -120, gz.min()), (140, 140, gz.max()))
        zi = box.z_index
        pr = psoas_r[zi][:, None, None]
        lateral = smoothstep((z_s1 - gz[zi]) / 80.0)[:, None, None]
        cxp = side * (vb_a0 + 0.8 * pr + 30 * lateral) + x_spine[zi][:, None, None]
        cyp = y_spine[zi][:, None, None] - 4 - 40 * lateral
        m = ((box.X - cxp) / np.maximum(pr, 1e-3)) ** 2 + ((box.Y - cyp) / np.maximum(0.85 * pr, 1e-3)) ** 2 <= 1
        canvas.paint(box, m & (pr > 0) & body.in_cavity(box, -t_muscle), "muscle")
        # quadratus lumborum (lumbar levels)
        ql = (gz[zi] < z_bif + 3.6 * pitch) & (gz[zi] > z_bif + 0.3 * pitch)
        cxq = side * (46 + 0.3 * pr) + x_spine[zi][:, None, None]
        cyq = y_spine[zi][:, None, None] + vb_b0 + 10
        m = ((box.X - cxq) / (10 + 0.4 * pr)) ** 2 + ((box.Y - cyq) / 8.0) ** 2 <= 1
        canvas.paint(box, m & ql[:, None, None], "muscle")
        # erector spinae: a rounded block in each gutter beside the spinous processes, from the
        # laminae back to the subcutaneous fat (narrower over the sacrum and in the thorax)
        half_w = (erector_w * (1 - 0.25 * chest - 0.35 * smoothstep((z_s1 - gz[zi]) / 40.0)) / 2)[:, None, None]
        y0 = y_spine[zi][:, None, None] + vb_b0 + 6
        y1 = body.outline["y_back"][zi][:, None, None]
        m = (np.abs((box.X - x_spine[zi][:, None, None] - side * (3 + half_w)) / half_w) ** 2.6
             + np.abs((box.Y - (y0 + y1) / 2) / ((y1 - y0) / 2)) ** 2.6) <= 1
        canvas.paint(box, m & (body.depth[box.sl] > 0.7 * t_fat0) & (gz[zi] > z_s1 - 80)[:, None, None], "muscle")


def diaphragm_z(levels: Levels, box: Box) -> np.ndarray:
    """z (mm) of the diaphragm above each voxel's (x, y): two domes, deep posterior recesses."""
    side_dome = np.where(box.X < 0, levels.z_dome_right, levels.z_dome_left)
    rad = np.sqrt(((np.abs(box.X) - 60) / 95.0) ** 2 + (box.Y / 90.0) ** 2)
    post = np.maximum(0, box.Y / 80.0)
    return side_dome - 85 * rad ** 2 - 45 * post ** 2


def below_diaphragm(levels: Levels, body: BodyOnGrid, box: Box) -> np.ndarray:
    """Voxels of ``box`` in the abdominal cavity, 4 mm below the diaphragm."""
    return (box.Z <= diaphragm_z(levels, box) - 4) & body.in_cavity(box)


def paint_diaphragm(canvas: Canvas, layout: AortaLayout, body: BodyOnGrid) -> None:
    """The lung bases above the diaphragm (beside the spine) and the diaphragm's 4 mm of muscle."""
    top = canvas.grid.box((-200, -200, layout.levels.z_bif + 110), (200, 200, 1e9))
    if top is not None:
        zd = diaphragm_z(layout.levels, top)
        inner = body.in_cavity(top, -layout.body.wall_muscle * 0.6)
        canvas.paint(top, inner & (top.Z > zd) & (np.abs(top.X) > 30), "lung")
        canvas.paint(top, inner & (top.Z <= zd) & (top.Z > zd - 4), "muscle")
