"""Site-like paired phantoms: a non-contrast scan and a CT angiogram acquired separately, as DICOM series.

A hospital's pairs are two acquisitions of one visit. Here each is a phantom of the same seed (the
same patient: the anatomy is drawn in millimetres, so any grid shows the same body) on its own grid:

* other field of view, pixel size and slice spacing for each scan (:class:`SiteProtocol`);
* the patient moved between the scans (:func:`site_motion`): a turn of 2-5 degrees about the long
  axis (and up to 1 degree about the others) and a table shift of 5-15 mm along z (up to 3 mm
  in-plane), about the non-contrast grid's centre;
* optionally another scanner (:data:`~DigitalContrastLib.phantoms.scanner.SHIFTED_SCANNER`: a sharp
  kernel, 100 kVp, +25 HU calibration), the shifted domain a site fine-tunes for.

Both are written as DICOM series of their own (one study, one frame of reference, a made-up
patient), with ``truth.json``: the motion and landmarks, points inside the body on a lattice of
:data:`LANDMARK_STEP_MM` with their true position in the contrast scan, against which a
registration's target registration error is measured (:func:`target_registration_error_mm`).
:func:`write_site_cohort` writes a cohort folder and its CSV (the ``prepare`` command's input).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from DigitalContrastLib.common.atomic import atomic_write_text
from DigitalContrastLib.common.errors import JobError
from DigitalContrastLib.ct.volume import CTVolume

from .dicom_series import new_uid, write_ct_series
from .generator import make_phantom
from .misregistration import RigidMisregistration
from .scanner import DEFAULT_SCANNER, SCANNERS, ScannerProfile

LANDMARK_STEP_MM = 20.0
#: The contrast scan is drawn this much larger on every side (mm), then cut to its field of view.
MOTION_MARGIN_MM = 24.0
#: Landmarks keep this far (mm) inside both scans' fields of view.
LANDMARK_MARGIN_MM = 10.0
TRUTH_FILE = "truth.json"
COHORT_CSV = "cohort.csv"
#: Cases that a ``prepare`` run must exclude, for tests and demos (each with its own one-sentence reason).
BAD_KINDS = ("other_patient", "other_region", "unenhanced_contrast")


@dataclass(frozen=True)
class Acquisition:
    """One scan's grid: voxels ``(x, y, z)``, spacing ``(x, y, z)`` mm, and the LPS z (mm) of its centre."""

    size_xyz: tuple[int, int, int]
    spacing_xyz_mm: tuple[float, float, float]
    center_z_mm: float = 0.0


@dataclass(frozen=True)
class SiteProtocol:
    """The two acquisitions of a site's pair."""

    name: str
    noncontrast: Acquisition
    contrast: Acquisition


#: About a clinical protocol, scaled to run on a CPU: 360 mm fields of view, non-contrast 1.2 mm
#: pixels and 2.5 mm slices over 300 mm, CT angiogram 1.1 mm pixels and 2 mm slices over 300 mm
#: reaching 30 mm further up.
SITE_PROTOCOL = SiteProtocol("site", Acquisition((300, 300, 120), (1.2, 1.2, 2.5), 0.0),
                             Acquisition((320, 320, 150), (1.1, 1.1, 2.0), 30.0))
#: The same geometry at a quarter of the resolution: seconds per case (tests, ``make test``).
SMALL_PROTOCOL = SiteProtocol("small", Acquisition((90, 90, 48), (4.0, 4.0, 6.25), 0.0),
                              Acquisition((96, 96, 60), (3.75, 3.75, 5.0), 30.0))
PROTOCOLS = {"site": SITE_PROTOCOL, "small": SMALL_PROTOCOL}


def site_motion(seed: int, visit: int = 0) -> RigidMisregistration:
    """The patient's motion between the two scans of a visit (see the module docstring), drawn from the seed."""
    rng = np.random.default_rng([int(seed), 211, int(visit)])
    sign = lambda: 1.0 if rng.random() < 0.5 else -1.0  # noqa: E731 - a one-line draw
    rz = sign() * rng.uniform(2.0, 5.0)
    rx, ry = rng.uniform(-1.0, 1.0, 2)
    shift = (rng.uniform(-3.0, 3.0), rng.uniform(-3.0, 3.0), sign() * rng.uniform(5.0, 15.0))
    return RigidMisregistration(round(float(rz), 6), round(float(rx), 6), round(float(ry), 6),
                                tuple(round(float(v), 6) for v in shift))  # type: ignore[arg-type]


@dataclass
class SitePair:
    """A site-like pair: the two scans on their own grids, the motion and the landmarks (LPS mm), and
    the label map on the non-contrast grid (the truth a site never has; tests score masks with it)."""

    noncontrast: CTVolume
    contrast: CTVolume
    truth: dict[str, Any] = field(default_factory=dict)
    labels: CTVolume | None = None


def _inside(volume: CTVolume, points_lps: np.ndarray, margin_mm: float) -> np.ndarray:
    index = volume.lps_to_index(points_lps)
    margin = margin_mm / np.asarray(volume.spacing_mm)
    size = np.asarray(volume.size_xyz)
    return np.all((index >= margin - 0.5) & (index <= size - 0.5 - margin), axis=1)


def landmarks(noncontrast: CTVolume, contrast: CTVolume, body: np.ndarray, motion: RigidMisregistration,
              center_lps_mm: Sequence[float], step_mm: float = LANDMARK_STEP_MM) -> tuple[np.ndarray, np.ndarray]:
    """Points of the non-contrast body on a lattice of ``step_mm`` that both scans show (margin
    :data:`LANDMARK_MARGIN_MM`), and where the motion puts each in the contrast scan (both ``[n, 3]`` LPS mm)."""
    steps = [max(1, int(round(step_mm / s))) for s in noncontrast.spacing_mm]  # x, y, z voxels
    z, y, x = np.nonzero(body[::steps[2], ::steps[1], ::steps[0]])
    index_xyz = np.stack([x * steps[0], y * steps[1], z * steps[2]], axis=1).astype(float)
    points = noncontrast.index_to_lps(index_xyz)
    matrix = motion.matrix_4x4(tuple(center_lps_mm))
    moved = points @ matrix[:3, :3].T + matrix[:3, 3]
    keep = _inside(noncontrast, points, LANDMARK_MARGIN_MM) & _inside(contrast, moved, LANDMARK_MARGIN_MM)
    return points[keep], moved[keep]


def make_site_pair(seed: int, protocol: SiteProtocol = SITE_PROTOCOL, scanner: ScannerProfile = DEFAULT_SCANNER,
                   visit: int = 0, contrast_seed: int | None = None, contrast_center_shift_mm: float = 0.0,
                   enhanced: bool = True) -> SitePair:
    """One pair (see the module docstring). The motion is about the non-contrast grid's centre.

    ``contrast_seed`` (another patient), ``contrast_center_shift_mm`` (another body region) and
    ``enhanced=False`` (a second non-contrast scan in place of the angiogram) make the bad pairs of
    :data:`BAD_KINDS`; a visit after the first moves both fields of view by 12 mm per visit.
    """
    nc_acq, c_acq = protocol.noncontrast, protocol.contrast
    shift = 12.0 * int(visit)
    nc_case = make_phantom(int(seed), size_xyz=nc_acq.size_xyz, spacing_xyz_mm=nc_acq.spacing_xyz_mm,
                           center_z_mm=nc_acq.center_z_mm + shift, scanner=scanner)
    noncontrast = nc_case.noncontrast
    center = tuple(float(v) for v in noncontrast.index_to_lps(np.array([(np.asarray(noncontrast.size_xyz) - 1) / 2.0]))[0])
    motion = site_motion(seed, visit)
    # the contrast phantom's misregistration turns about its own grid centre: express the motion
    # about the non-contrast centre c as the same rotation about c' with translation t + (R - I)(c' - c)
    c_seed = int(contrast_seed if contrast_seed is not None else seed)
    c_center = _grid_center(c_seed, c_acq, shift + contrast_center_shift_mm)
    # drawn on a grid MOTION_MARGIN_MM larger on every side and cut to the acquisition's: the moved
    # anatomy near the edges comes from inside the drawing, as a scanner would show it
    pad = [int(np.ceil(MOTION_MARGIN_MM / s)) for s in c_acq.spacing_xyz_mm]
    c_case_grid = make_phantom(c_seed, size_xyz=tuple(n + 2 * k for n, k in zip(c_acq.size_xyz, pad)),
                               spacing_xyz_mm=c_acq.spacing_xyz_mm, center_z_mm=c_center[2],
                               misregistration=_about(motion, center, c_center), scanner=scanner)
    drawn = c_case_grid.contrast if enhanced else c_case_grid.noncontrast
    (px, py, pz), (nx, ny, nz) = pad, c_acq.size_xyz
    origin = drawn.index_to_lps(np.array([[float(px), float(py), float(pz)]]))[0]
    contrast = CTVolume(np.ascontiguousarray(drawn.array[pz:pz + nz, py:py + ny, px:px + nx]), drawn.spacing_mm,
                        tuple(float(v) for v in origin), drawn.direction, dict(drawn.metadata))
    points, moved = landmarks(noncontrast, contrast, nc_case.labels.array > 0, motion, center)
    truth = {
        "seed": int(seed), "visit": int(visit), "protocol": protocol.name, "scanner": scanner.to_dict(),
        "motion": motion.to_dict(center),
        "landmark_step_mm": LANDMARK_STEP_MM,
        "landmarks_noncontrast_lps_mm": points.round(4).tolist(),
        "landmarks_contrast_lps_mm": moved.round(4).tolist(),
        "note": "a landmark p of the non-contrast scan shows at the contrast scan's point T(p) (motion, fixed -> moving)",
    }
    return SitePair(noncontrast=noncontrast, contrast=contrast, truth=truth, labels=nc_case.labels)


def _grid_center(seed: int, acq: Acquisition, z_shift_mm: float) -> tuple[float, float, float]:
    """LPS centre of the phantom grid of ``seed`` (the aorta phantom centres it in-plane on the body)."""
    from .aorta.build import sample_layout

    return (0.0, float(sample_layout(int(seed)).body.grid_center_y), float(acq.center_z_mm + z_shift_mm))


def _about(motion: RigidMisregistration, center: Sequence[float], other_center: Sequence[float]) -> RigidMisregistration:
    """The same motion written about ``other_center`` instead of ``center``."""
    r = motion.rotation_matrix()
    c, c2 = np.asarray(center, float), np.asarray(other_center, float)
    t = np.asarray(motion.translation_mm, float) + (r - np.eye(3)) @ (c2 - c)
    return RigidMisregistration(motion.rotation_z_deg, motion.rotation_x_deg, motion.rotation_y_deg,
                                tuple(float(v) for v in t))  # type: ignore[arg-type]


def target_registration_error_mm(truth: dict[str, Any], transform: Any) -> dict[str, float]:
    """Mean, median and maximum distance (mm) between a registration's mapping of the landmarks and
    their true positions. ``transform`` maps non-contrast (fixed) points to contrast (moving)
    points, as :func:`DigitalContrastLib.evaluation.registration.register` returns it."""
    points = np.asarray(truth["landmarks_noncontrast_lps_mm"], dtype=float)
    true = np.asarray(truth["landmarks_contrast_lps_mm"], dtype=float)
    if points.size == 0:
        return {"n": 0, "mean_mm": float("nan"), "median_mm": float("nan"), "max_mm": float("nan")}
    mapped = np.array([transform.TransformPoint(tuple(float(v) for v in p)) for p in points])
    error = np.linalg.norm(mapped - true, axis=1)
    return {"n": int(len(error)), "mean_mm": float(error.mean()), "median_mm": float(np.median(error)),
            "max_mm": float(error.max())}


def _header(patient: str, study_uid: str, frame_uid: str, scanner: ScannerProfile, when: _dt.date,
            enhanced: bool, description: str) -> dict[str, Any]:
    header = {
        "PatientName": f"PHANTOM^{patient}", "PatientID": f"SITE-{patient}", "PatientBirthDate": "",
        "PatientSex": "O", "StudyInstanceUID": study_uid, "FrameOfReferenceUID": frame_uid,
        "StudyDate": when.strftime("%Y%m%d"), "StudyTime": "100000", "StudyDescription": "CT aorta (phantom)",
        "AccessionNumber": "", "SeriesDescription": description, "SeriesNumber": 3 if enhanced else 2,
        "AcquisitionDate": when.strftime("%Y%m%d"), "AcquisitionTime": "100430" if enhanced else "100000",
        "Manufacturer": scanner.manufacturer, "ManufacturerModelName": scanner.model, "KVP": f"{scanner.kvp:g}",
        "ConvolutionKernel": scanner.kernel, "BodyPartExamined": "ABDOMEN", "PatientPosition": "FFS",
    }
    if enhanced:
        header.update(ContrastBolusAgent="IOHEXOL 350", ContrastBolusRoute="IV", ContrastBolusVolume="80",
                      ContrastBolusStartTime="100405")
    return header


def write_site_cohort(out_dir: str | os.PathLike, patients: int, seed_start: int = 30001,
                      protocol: SiteProtocol = SITE_PROTOCOL, scanner: ScannerProfile = DEFAULT_SCANNER,
                      second_visit_every: int = 0, bad: Sequence[str] = (), one_folder: bool = False,
                      on_case: Callable[[str, str], None] | None = None) -> Path:
    """Write a site-like cohort into ``out_dir`` and return its ``cohort.csv``.

    Args:
        patients: patients ``P0001...`` with seeds ``seed_start + k``; one case each (``s001...``).
        second_visit_every: every n-th patient also has a second visit (another case of the same
            patient; 0: none), so that folds must be split by patient.
        bad: extra cases of :data:`BAD_KINDS`, each ``prepare`` must exclude.
        one_folder: write both series of each case into one folder ``<case>/study/`` (the CSV then
            names the series in ``noncontrast_series`` and ``contrast_series``).

    Columns: case_id, noncontrast, contrast, patient, seed, visit, domain (and the series columns).

    Raises:
        JobError: fewer than 1 patient, a negative seed or an unknown bad kind.
    """
    if int(patients) < 1 or int(seed_start) < 0:
        raise JobError(f"A site cohort needs at least 1 patient and a seed start of 0 or more (got {patients}, {seed_start}).")
    unknown = [k for k in bad if k not in BAD_KINDS]
    if unknown:
        raise JobError(f"Unknown bad case kind(s) {unknown}: choose from {', '.join(BAD_KINDS)}.")
    out = Path(out_dir)
    plan: list[tuple[str, str, int, int, dict[str, Any]]] = []
    for k in range(int(patients)):
        patient, seed = f"P{k + 1:04d}", int(seed_start) + k
        plan.append((f"s{len(plan) + 1:03d}", patient, seed, 0, {}))
        if second_visit_every and (k + 1) % int(second_visit_every) == 0:
            plan.append((f"s{len(plan) + 1:03d}", patient, seed, 1, {}))
    extra = {"other_patient": {"contrast_seed": int(seed_start) + 5000},
             "other_region": {"contrast_center_shift_mm": 900.0},
             "unenhanced_contrast": {"enhanced": False}}
    for j, kind in enumerate(bad):
        plan.append((f"bad-{kind.replace('_', '-')}", f"Q{j + 1:04d}", int(seed_start) + 9000 + j, 0, extra[kind]))
    rows = []
    for case_id, patient, seed, visit, options in plan:
        pair = make_site_pair(seed, protocol, scanner, visit=visit, **options)
        when = _dt.date(2021, 1, 4) + _dt.timedelta(days=(seed * 37 + visit * 200) % 1000)
        study, frame = new_uid(), new_uid()
        other = "contrast_seed" in options  # another patient: another study, frame and patient id
        folder = out / case_id
        nc_dir, c_dir = (folder / "study", folder / "study") if one_folder else (folder / "noncontrast", folder / "contrast")
        nc_header = _header(patient, study, frame, scanner, when, False,
                            f"NON-CONTRAST {protocol.noncontrast.spacing_xyz_mm[2]:g} mm")
        c_header = _header(patient if not other else f"X{patient}", study if not other else new_uid(),
                           frame if not other else new_uid(), scanner, when, options.get("enhanced", True),
                           "CTA ARTERIAL" if options.get("enhanced", True) else "NON-CONTRAST REPEAT")
        nc_header["SeriesInstanceUID"], c_header["SeriesInstanceUID"] = new_uid(), new_uid()
        if one_folder:
            import shutil
            import tempfile

            with tempfile.TemporaryDirectory(dir=out if out.exists() else None) as scratch:
                write_ct_series(pair.noncontrast, Path(scratch) / "nc", nc_header)
                write_ct_series(pair.contrast, Path(scratch) / "c", c_header)
                nc_dir.mkdir(parents=True, exist_ok=True)
                for sub in ("nc", "c"):
                    for f in (Path(scratch) / sub).iterdir():
                        shutil.move(str(f), nc_dir / f"{sub}-{f.name}")
        else:
            write_ct_series(pair.noncontrast, nc_dir, nc_header)
            write_ct_series(pair.contrast, c_dir, c_header)
        atomic_write_text(folder / TRUTH_FILE, json.dumps(pair.truth, indent=1) + "\n")
        row = {"case_id": case_id, "noncontrast": f"{case_id}/{nc_dir.name}", "contrast": f"{case_id}/{c_dir.name}",
               "patient": patient, "seed": seed, "visit": visit,
               "domain": next((k for k, v in SCANNERS.items() if v == scanner), scanner.name)}
        if one_folder:
            row.update(noncontrast_series=nc_header["SeriesInstanceUID"], contrast_series=c_header["SeriesInstanceUID"])
        rows.append(row)
        if on_case:
            motion = pair.truth["motion"]
            on_case(case_id, f"patient {patient} seed {seed}: turned {motion['rotation_z_deg']:+.1f} deg, table "
                             f"{motion['translation_mm'][2]:+.1f} mm, {len(pair.truth['landmarks_noncontrast_lps_mm'])} "
                             "landmarks" + ("; BAD on purpose" if options else ""))
    return _write_csv(out / COHORT_CSV, rows)


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """The cohort CSV (the columns of the first row, then any others), written atomically."""
    import csv
    import io

    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


