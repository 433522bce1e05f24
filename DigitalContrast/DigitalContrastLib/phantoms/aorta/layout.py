"""The aorta patient as sampled: one :class:`AortaLayout` of landmarks, outlines, centre lines and radii.

Every value is in millimetres in the patient's LPS frame (x to the patient's left, y posterior,
z superior; the body's midline is x = 0) and none depends on the grid: profiles along z are
sampled on :data:`FINE_Z`, the anatomy's own 1 mm lattice. :func:`~.build.sample_layout` draws every
random value of a patient into a layout; the painters (``body``, ``skeleton``, ``organs``, ``bowel``,
``arteries``, ``veins``, ``chest``) voxelise it and draw nothing at random.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..canvas import SliceTube

FINE_Z = np.arange(-320.0, 420.0, 1.0)  # the anatomy's z lattice (mm), independent of the grid
ANEURYSM_PROBABILITY = 0.7


@dataclass(frozen=True)
class Levels:
    """Craniocaudal landmarks (LPS z, mm) and whether the aorta has an aneurysm."""

    z_bif: float  # aortic bifurcation, at L4
    pitch: float  # vertebral body + disc height (mm)
    aneurysm: bool
    sac_diameter: float  # the aneurysm's maximum outer diameter (mm), 0 without one
    z_renal: float  # renal arteries
    z_sma: float  # origin of the superior mesenteric artery
    z_celiac: float  # origin of the coeliac trunk
    z_dome_right: float  # right diaphragmatic dome: the chest starts above it
    z_dome_left: float

    @property
    def z_l3(self) -> float:
        return self.z_bif + self.pitch

    @property
    def z_s1(self) -> float:
        return self.z_bif - 1.5 * self.pitch


@dataclass(frozen=True)
class Body:
    """The body outline: per slice two half-ellipses (front, back) with fuller flanks, cut flat at the back."""

    fat: float  # subcutaneous fat (mm)
    half_width: float  # (mm)
    front_half_depth: float  # (mm)
    back_half_depth: float  # (mm)
    wall_muscle: float  # abdominal wall muscle (mm)
    squareness: float  # how much the diagonals bulge (fraction)
    outline: dict[str, np.ndarray]  # on FINE_Z (mm): a, b_ant, b_post, yc, y_back, square
    chest_weight: np.ndarray  # on FINE_Z: 0 in the abdomen ... 1 in the chest

    @property
    def y_back(self) -> float:
        """LPS y (mm) of the flat back."""
        return 0.93 * self.back_half_depth

    @property
    def grid_center_y(self) -> float:
        """LPS y (mm) halfway between the front of the abdomen and the flat back: the grid's centre."""
        return (0.93 * self.back_half_depth - self.front_half_depth) / 2.0

    @property
    def cavity_margin(self) -> float:
        """Depth below the skin (mm) where the abdominal and thoracic cavity begins."""
        return self.fat * 1.3 + self.wall_muscle * 1.3


@dataclass(frozen=True)
class Spine:
    """The vertebral column's centre line and the size of its vertebral bodies at L4 (mm)."""

    x_line: np.ndarray  # on FINE_Z: LPS x of the column's centre
    y_line: np.ndarray  # on FINE_Z: LPS y of the column's centre
    lordosis: float
    disc_height: float
    body_half_width: float
    body_half_depth: float
    shell: float  # cortical shell of every bone

    def x_at(self, z: np.ndarray) -> np.ndarray:
        """LPS x (mm) of the column's centre at ``z`` (e.g. the grid's slices)."""
        return np.interp(z, FINE_Z, self.x_line)

    def y_at(self, z: np.ndarray) -> np.ndarray:
        """LPS y (mm) of the column's centre at ``z``."""
        return np.interp(z, FINE_Z, self.y_line)

    def front(self, z: np.ndarray | float) -> np.ndarray:
        """LPS y (mm) of the anterior surface of the vertebral column at ``z``."""
        return np.interp(z, FINE_Z, self.y_line) - self.body_half_depth


@dataclass(frozen=True)
class Muscles:
    """The trunk muscles' sizes (the psoas profile: :func:`~.body.psoas_radius`)."""

    erector_width: float  # both erector spinae together (mm)
    psoas_scale: float  # the psoas radius profile's factor


@dataclass(frozen=True)
class Pelvis:
    """Iliac wings (a curved plate per slice, :func:`~.skeleton.paint_pelvis`) and femoral heads."""

    z_crest: float
    wing_angle: float  # where the anterior iliac spine sits on the outline, degrees from lateral
    wing_radius: float
    z_notch: float  # the greater sciatic notch: the wings' lower end
    head_radius: float
    head_center: tuple[float, float, float]  # the left femoral head's (x > 0); the right one mirrors it


@dataclass(frozen=True)
class Kidney:
    """A tilted ellipsoid; its hilum opens along the second axis."""

    center: np.ndarray  # (3,) LPS mm
    axes: tuple[np.ndarray, np.ndarray, np.ndarray]  # unit vectors: long axis, hilum direction, third axis
    radii: np.ndarray  # (3,) mm along ``axes``

    @property
    def hilum(self) -> np.ndarray:
        """The hilum's centre (LPS mm), where the renal vessels enter."""
        return self.center + self.axes[1] * self.radii[1] * 0.55


@dataclass(frozen=True)
class Organs:
    """Solid organs, stomach and bladder: ellipsoid centres and radii (LPS mm, x y z)."""

    liver_center: tuple[float, float, float]
    liver_radii: tuple[float, float, float]
    left_lobe_center: tuple[float, float, float]
    left_lobe_radii: tuple[float, float, float]
    gallbladder_center: tuple[float, float, float]
    gallbladder_radii: tuple[float, float, float]
    spleen_angle: float  # radians, about z
    spleen_rotation: np.ndarray  # 3x3, columns = the spleen's axes
    spleen_center: tuple[float, float, float]
    spleen_radii: tuple[float, float, float]
    stomach_center: tuple[float, float, float]
    stomach_radii: tuple[float, float, float]
    gas_level_y: float  # the stomach's air-fluid level (LPS y)
    kidneys: dict[str, Kidney]  # "left", "right"
    cortex: float  # renal cortex thickness (mm)
    pyramids: int
    bladder_center: tuple[float, float, float]
    bladder_radii: tuple[float, float, float]


@dataclass(frozen=True)
class Vertebrae:
    """Each vertebral level from L5 to T1, the spinal canal and the processes (mm)."""

    canal_radii: tuple[float, float]  # spinal canal, x and y (mm)
    spinous_length: float
    transverse_reach: float
    levels: list[tuple[str, float, float, float]]  # (name, z centre, half width, half depth) from L5 up


@dataclass(frozen=True)
class Ribs:
    """Ribs 6 to 12: from beside the spine round the body wall, descending anteriorly."""

    radius: float
    depth: float  # of the rib's centre below the skin (mm)
    ribs: list[tuple[str, float, float, float]]  # (name, z of the head, end angle in radians, drop in mm)


@dataclass(frozen=True)
class Aorta:
    """The aorta from the arch down to its bifurcation, with the sac, thrombus and its tube."""

    diameter_top: float
    diameter_bif: float
    wall: float
    x_top: float
    x_low: float
    side_bulge: float
    gap_to_spine: float
    neck: float | None  # the aneurysm's neck below the renal arteries; None without one
    z_sac_top: float | None
    z_sac_bottom: float | None
    z_sac_widest: float | None
    thrombus_burden: float
    thrombus_eccentricity: float
    lumen_angle: float  # radians: the lumen's offset from the sac centre, in-plane (0 = +x)
    z_arch: float  # the descending aorta ends here, where the arch takes over
    cx: np.ndarray  # on FINE_Z: centre line x
    cy: np.ndarray  # on FINE_Z: centre line y
    outer: np.ndarray  # on FINE_Z: outer radius (before the cap at the bifurcation)
    tube: SliceTube  # as painted: capped at the bifurcation, absent above the arch

    def point(self, z: float) -> np.ndarray:
        """The aorta's centre at ``z`` (mm): branches start inside its lumen."""
        return np.array([np.interp(z, FINE_Z, self.cx), np.interp(z, FINE_Z, self.cy), z])

    def front_y(self, z: float) -> float:
        """LPS y (mm) of the aorta's anterior wall at ``z``."""
        return float(np.interp(z, FINE_Z, self.cy) - np.interp(z, FINE_Z, self.outer))


@dataclass(frozen=True)
class Iliac:
    """One iliac artery: its divergence angle, the common iliac's length and the tube as painted."""

    angle_deg: float
    common_length: float
    internal_origin: list[float]  # LPS mm
    tube: SliceTube


@dataclass(frozen=True)
class IliacArteries:
    """Both iliac arteries (one lumen radius, mm)."""

    lumen_radius: float
    sides: dict[str, Iliac]  # "left", "right"


@dataclass(frozen=True)
class VenaCava:
    """The inferior vena cava (an ellipse per slice) and the iliac veins that join it."""

    radii: tuple[float, float]  # x, y (mm)
    z_confluence: float
    z_renal_veins: float
    x_line: np.ndarray  # on FINE_Z
    y_line: np.ndarray  # on FINE_Z
    tube: SliceTube
    iliac_vein_radius: float
    iliac_veins: list[SliceTube]  # left, right


@dataclass(frozen=True)
class BranchArteries:
    """Visceral, renal, internal iliac and mesenteric arteries as polylines."""

    radius: float
    polylines: dict[str, np.ndarray]  # name -> (n, 3) LPS mm


@dataclass(frozen=True)
class VisceralVeins:
    """The portal system and the renal veins, and the pancreas along the splenic vein."""

    polylines: dict[str, np.ndarray]  # name -> (n, 3) LPS mm
    radius: float
    pancreas: np.ndarray  # (4, 3) LPS mm
    pancreas_radii: list[float]


@dataclass(frozen=True)
class Bowel:
    """Colon path and the random fields (a fixed 4 mm lattice) that shape the loops and the gas."""

    correlation: float  # of the loops' fields (mm)
    origin: np.ndarray  # LPS (x, y, z) of the lattice's first point
    fields: np.ndarray  # float32 (4, z, y, x): two for the loops, one for their gas, one for the stool
    colon_path: np.ndarray  # (13, 3) LPS mm, caecum to rectum
    colon_radii: np.ndarray  # (13,) mm
    loop_threshold: float
    gas_threshold: float


@dataclass(frozen=True)
class Heart:
    """The heart: a tilted ellipsoid (LPS mm) with the centres of its left and right chambers."""

    center: np.ndarray
    radii: np.ndarray
    angle: float  # radians, about z: apex to the left and forwards
    rotation: np.ndarray
    left_center: np.ndarray  # left chambers
    right_center: np.ndarray


@dataclass(frozen=True)
class AorticArch:
    """Aortic root, ascending aorta and arch (drawn as a polyline), and the arch's three branches."""

    root: np.ndarray
    top: np.ndarray  # top of the ascending aorta
    radius: float  # of the ascending aorta
    rise: float
    path: np.ndarray  # (n, 3) LPS mm, root to the descending aorta
    radii: np.ndarray  # (n,) outer radii (mm)
    branches: list[tuple[np.ndarray, float]]  # brachiocephalic, left carotid, left subclavian


@dataclass(frozen=True)
class PulmonaryArteries:
    """Pulmonary trunk, the arteries to both hila, and their branches into the lungs (LPS mm)."""

    radius: float  # of the trunk
    bifurcation: np.ndarray
    trunk: np.ndarray  # (3, 3) LPS mm
    hilar: list[np.ndarray]  # bifurcation to each hilum: right, left
    hila: dict[str, np.ndarray]  # "right", "left"
    per_side: int  # branches into each lung
    lung_branches: list[tuple[np.ndarray, np.ndarray]]  # (points, radii), left lung first


@dataclass(frozen=True)
class Chest:
    """The chest above the right diaphragmatic dome (:mod:`~.chest`)."""

    z_start: float  # the right dome
    z_arch: float
    upper_ribs: list[tuple[float, float, float]]  # T5 ... T1: (z of the head, end angle, drop)
    y_sternum: float
    sternum: np.ndarray
    mediastinum_x: float
    heart: Heart
    arch: AorticArch
    pulmonary: PulmonaryArteries
    svc_radius: float
    svc: np.ndarray
    oesophagus_radius: float
    oesophagus: np.ndarray


@dataclass(frozen=True)
class Periaortic:
    """The thoracic aorta's surroundings (:func:`~.chest.paint_periaortic`)."""

    lung_contact: bool
    lung_gap: float
    lung_reach: float
    lung_arc: tuple[float, float]  # degrees, in-plane: 0 = patient left, 90 = posterior
    sleeve: float
    sleeve_side: float  # degrees


@dataclass(frozen=True)
class AortaLayout:
    """One patient of the aorta IFU, as sampled from a seed (see :func:`~.build.sample_layout`)."""

    levels: Levels
    body: Body
    spine: Spine
    muscles: Muscles
    pelvis: Pelvis
    organs: Organs
    vertebrae: Vertebrae
    ribs: Ribs
    aorta: Aorta
    iliacs: IliacArteries
    vena_cava: VenaCava
    branches: BranchArteries
    visceral_veins: VisceralVeins
    plaques: list[dict[str, Any]]  # calcified plaques: on, z_mm, angle_deg, arc_half_mm, z_half_mm, thickness_mm
    bowel: Bowel
    chest: Chest
    periaortic: Periaortic
