"""Register a real contrast CT onto the non-contrast CT grid (SimpleITK, intensity based).

Conventions:

* Geometry is LPS millimetres (DICOM/ITK). Arrays are ``[z, y, x]``.
* Every transform maps **fixed → moving**: a point ``p`` of the fixed (non-contrast) scan, in LPS
  mm, goes to ``T(p)``, the corresponding point of the moving (contrast) scan. This is the
  direction SimpleITK's resampling uses: the registered image is ``moving(T(p))`` sampled at the
  fixed grid's voxel centres. (To move *points* from the moving scan into the fixed scan, use
  ``T.GetInverse()``; a B-spline stage has no closed-form inverse.)

Method (see :func:`register`): Mattes mutual information (so that the lumen may be 40 HU in one
scan and 350 HU in the other), evaluated on a fixed number of random samples drawn with a fixed
seed inside the fixed scan's body mask (air ignored), over three resolution levels (shrink 4, 2, 1
with Gaussian smoothing 2, 1, 0 voxels); a rigid Euler3DTransform optimised by regular-step
gradient descent with physical-shift parameter scales; optionally a cubic B-spline stage on top.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from DigitalContrastLib.common.errors import InputError
from DigitalContrastLib.common.progress import ProgressCallback, no_progress
from DigitalContrastLib.ct.masks import body_mask_from_ct
from DigitalContrastLib.ct.volume import CTVolume

METHODS = ("rigid", "bspline", "none")
INITIALIZERS = ("identity", "geometry")
INTERPOLATORS = ("linear", "nearest", "bspline")

#: Progress stage name reported by :func:`register`.
PROGRESS_STAGE = "register"
#: Random samples of the metric per resolution level (capped at all voxels in the mask).
METRIC_SAMPLES = 50_000
#: Fewer for the B-spline stage: its metric gradient costs ~10 µs per sample (~1,000 parameters).
BSPLINE_METRIC_SAMPLES = 20_000
HISTOGRAM_BINS = 50
RIGID_SHRINK_FACTORS = (4, 2, 1)
RIGID_SMOOTHING_SIGMAS_VOX = (2.0, 1.0, 0.0)
BSPLINE_SHRINK_FACTORS = (2, 1)
BSPLINE_SMOOTHING_SIGMAS_VOX = (1.0, 0.0)
#: Fraction of the fixed body that must lie inside the moving scan after initialisation.
MIN_OVERLAP_FRACTION = 0.10
#: Body-mask dilation (voxels) so that the skin/air edge, a strong feature, is in the metric.
MASK_DILATION_VOX = 2


@dataclass
class RegistrationResult:
    """The outcome of :func:`register`.

    Attributes:
        registered: the moving volume resampled onto the fixed grid (int16 HU, ``default_hu``
            where the moving scan has no data).
        transform: fixed → moving transform in LPS mm (a ``SimpleITK.Transform``: Euler3D for
            rigid, a composite rigid + B-spline for bspline, identity for none).
        method: ``"rigid"``, ``"bspline"`` or ``"none"``.
        metric_value: Mattes mutual information (negative; lower is better aligned) of the final
            transform, evaluated at full resolution with the same samples for every method.
        iterations: optimiser iterations over all levels and stages.
        seconds: wall-clock time of the registration and the resampling.
        rigid_parameters: the rigid stage: ``rotation_deg`` (angles about LPS x, y, z),
            ``translation_mm`` (LPS), ``center_mm`` (LPS centre of rotation) and ``convention``.
        stage_metric_values: the full-resolution metric before registration (``"initial"``)
            and after each stage run (``"rigid"``, ``"bspline"``).
        final_stage: the stage whose transform was returned: ``"none"``, ``"rigid"``, or
            ``"bspline"`` (a B-spline stage that does not lower the metric is dropped).
    """

    registered: CTVolume
    transform: Any
    method: str
    metric_value: float
    iterations: int
    seconds: float
    rigid_parameters: dict[str, Any]
    stage_metric_values: dict[str, float] = field(default_factory=dict)
    final_stage: str = "none"


def _name(volume: CTVolume, role: str) -> str:
    path = volume.metadata.get("path") or volume.metadata.get("source")
    return f"{role} scan {path}" if path else f"{role} scan"


def _check_volume(volume: CTVolume, role: str) -> None:
    if volume.array.ndim != 3 or min(volume.array.shape) < 4:
        raise InputError(
            f"The {_name(volume, role)} has shape {tuple(volume.array.shape)}: registration needs a 3D volume "
            "of at least 4 voxels along each axis."
        )


def _float_image(volume: CTVolume):
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array, dtype=np.float32))
    image.SetSpacing(volume.spacing_mm)
    image.SetOrigin(volume.origin_mm)
    image.SetDirection(volume.direction)
    return image


def _mask_image(mask: np.ndarray, like):
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(like)
    return image


def resample_to(
    volume: CTVolume,
    reference: CTVolume,
    transform: Any = None,
    default_hu: float = -1024,
    interpolator: str = "linear",
) -> CTVolume:
    """Resample ``volume`` onto ``reference``'s grid: ``out(p) = volume(T(p))``.

    Args:
        volume: the volume to resample (any grid).
        reference: gives the output grid (shape, spacing, origin, direction); its voxels are unused.
        transform: fixed → moving ``SimpleITK.Transform`` in LPS mm (reference → volume); identity
            when None.
        default_hu: value where ``T(p)`` falls outside ``volume``.
        interpolator: ``"linear"``, ``"nearest"`` (label maps) or ``"bspline"`` (cubic).

    Returns:
        A :class:`CTVolume` on the reference grid with ``volume``'s dtype (integers rounded and
        clipped to the dtype's range) and ``volume``'s metadata.
    """
    if interpolator not in INTERPOLATORS:
        raise ValueError(f"interpolator must be one of {INTERPOLATORS}, got {interpolator!r}")
    dtype = volume.array.dtype
    keep_type = interpolator == "nearest"
    image = volume.to_sitk() if keep_type else _float_image(volume)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(reference.size_xyz)
    resampler.SetOutputSpacing(reference.spacing_mm)
    resampler.SetOutputOrigin(reference.origin_mm)
    resampler.SetOutputDirection(reference.direction)
    resampler.SetTransform(transform if transform is not None else sitk.Transform(3, sitk.sitkIdentity))
    resampler.SetInterpolator(
        {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}[interpolator]
    )
    resampler.SetDefaultPixelValue(float(default_hu))
    resampler.SetOutputPixelType(image.GetPixelID())
    array = sitk.GetArrayFromImage(resampler.Execute(image))
    if not keep_type and np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        array = np.clip(np.rint(array), info.min, info.max)
    return CTVolume(
        array=array.astype(dtype, copy=False),
        spacing_mm=reference.spacing_mm,
        origin_mm=reference.origin_mm,
        direction=reference.direction,
        metadata=dict(volume.metadata),
    )


class _Progress:
    """Turns SimpleITK iteration events into ``progress("register", done, total)`` calls.

    ``total`` is the sum of the iteration limits of every level of every stage; a level that
    converges early jumps ``done`` to the start of the next level.
    """

    def __init__(self, callback: ProgressCallback, level_budgets: list[int]) -> None:
        self.callback = callback
        self.budgets = [max(int(b), 1) for b in level_budgets]
        self.starts = np.concatenate([[0], np.cumsum(self.budgets)]).astype(int).tolist()
        self.total = int(self.starts[-1])
        self.level = -1  # over all stages
        self.level_iterations: list[int] = []
        self.done = -1

    @property
    def iterations(self) -> int:
        """Optimiser iterations run so far, over all levels and stages."""
        return int(sum(self.level_iterations))

    def attach(self, method) -> None:
        """Follow the levels and iterations of a ``SimpleITK.ImageRegistrationMethod``."""
        method.AddCommand(sitk.sitkMultiResolutionIterationEvent, self._next_level)
        # L-BFGS-B fires one event per function evaluation: count its iteration index instead
        method.AddCommand(sitk.sitkIterationEvent, lambda: self._iteration(method.GetOptimizerIteration()))

    def _report(self, done: int) -> None:
        done = min(max(done, 0), self.total)
        if done != self.done:
            self.done = done
            self.callback(PROGRESS_STAGE, done, self.total)

    def _next_level(self) -> None:
        self.level = min(self.level + 1, len(self.budgets) - 1)
        self.level_iterations.append(0)
        self._report(self.starts[self.level])

    def _iteration(self, index: int) -> None:
        self.level_iterations[-1] = max(self.level_iterations[-1], int(index) + 1)
        self._report(self.starts[self.level] + min(self.level_iterations[-1], self.budgets[self.level]))

    def finish(self) -> None:
        self._report(self.total)


def _sampling_percentages(mask: np.ndarray, shrink_factors, samples: int) -> list[float]:
    """Per level, the fraction of voxels giving about ``samples`` random samples in the mask."""
    in_mask = max(int(mask.sum()), 1)
    return [float(min(1.0, samples * f**3 / in_mask)) for f in shrink_factors]


def _itk_seed(seed: int) -> int:
    # SimpleITK reads seed 0 as "use the wall clock": shift so that every seed is fixed.
    return int(seed) % (2**31 - 2) + 1


def _new_method(mask_image, percentages, seed: int, threads: int):
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=HISTOGRAM_BINS)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentagePerLevel(percentages, _itk_seed(seed))
    method.SetMetricFixedMask(mask_image)
    # image gradients at the samples only, not a whole gradient image per level (3x faster here)
    method.SetMetricUseFixedImageGradientFilter(False)
    method.SetMetricUseMovingImageGradientFilter(False)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetNumberOfThreads(threads)
    return method


def _metric_at_full_resolution(fixed_image, moving_image, mask_image, percentage, seed, threads, transform) -> float:
    """Mattes MI of ``transform`` at full resolution, with fixed samples (comparable across runs)."""
    method = _new_method(mask_image, [percentage], seed, threads)
    method.SetShrinkFactorsPerLevel([1])
    method.SetSmoothingSigmasPerLevel([0])
    method.SetInitialTransform(transform, inPlace=False)
    return float(method.MetricEvaluate(fixed_image, moving_image))


def _overlap_fraction(fixed: CTVolume, moving: CTVolume, mask: np.ndarray, transform) -> float:
    """Fraction of (up to 20,000) fixed body voxels that ``transform`` maps inside the moving scan."""
    index_zyx = np.argwhere(mask)
    if len(index_zyx) > 20_000:
        index_zyx = index_zyx[np.linspace(0, len(index_zyx) - 1, 20_000).astype(int)]
    points = fixed.index_to_lps(index_zyx[:, ::-1].astype(float))
    mapped = np.array([transform.TransformPoint(tuple(p)) for p in points])
    index = moving.lps_to_index(mapped)
    inside = np.all((index >= -0.5) & (index <= np.asarray(moving.size_xyz) - 0.5), axis=1)
    return float(inside.mean())


def rigid_parameters(transform) -> dict[str, Any]:
    """Angles, translation and centre of a ``SimpleITK.Euler3DTransform`` (fixed → moving, LPS)."""
    return {
        "rotation_deg": [
            math.degrees(a) for a in (transform.GetAngleX(), transform.GetAngleY(), transform.GetAngleZ())
        ],
        "translation_mm": list(transform.GetTranslation()),
        "center_mm": list(transform.GetCenter()),
        "convention": "ITK Euler3DTransform, fixed -> moving, LPS mm: p_moving = R (p - c) + c + t, R = Rz Rx Ry",
    }


def register(
    fixed: CTVolume,
    moving: CTVolume,
    method: str = "rigid",
    progress: ProgressCallback | None = None,
    seed: int = 0,
    *,
    initializer: str = "identity",
    rigid_iterations: int = 200,
    bspline_mesh_size: tuple[int, int, int] = (4, 4, 4),
    bspline_iterations: int = 20,
    metric_samples: int = METRIC_SAMPLES,
    bspline_metric_samples: int = BSPLINE_METRIC_SAMPLES,
    threads: int | None = None,
) -> RegistrationResult:
    """Register ``moving`` (e.g. the real contrast CT) onto ``fixed`` (the non-contrast CT).

    Args:
        fixed: the scan whose grid the result lives on (HU).
        moving: the scan to align (HU; any grid).
        method: ``"rigid"`` (Euler3D), ``"bspline"`` (rigid, then a cubic B-spline of
            ``bspline_mesh_size`` control-point intervals over the fixed grid) or ``"none"`` (no
            optimisation: ``moving`` resampled onto the fixed grid in scanner coordinates).
        progress: called as ``progress("register", done, total)`` on every optimiser iteration.
        seed: seed of the metric's random sampling; the same inputs and seed give the same
            result (to ~1e-6 mm: multi-threaded sums may add in a different order).
        initializer: ``"identity"`` keeps scanner coordinates (scans of one study share a frame of
            reference) with the centre of rotation at the fixed body's centroid; ``"geometry"``
            first moves the centre of ``moving``'s box onto the centre of ``fixed``'s (scans from
            different frames of reference; wrong when the two cover different lengths).
        rigid_iterations, bspline_iterations: optimiser iteration limits per resolution level.
        metric_samples, bspline_metric_samples: random metric samples per level inside the fixed
            body mask, for the rigid and the B-spline stage.
        threads: SimpleITK threads; all cores when None.

    Returns:
        A :class:`RegistrationResult`; ``result.transform`` maps fixed → moving points (LPS mm).

    Raises:
        InputError: a volume is not 3D, the fixed scan shows no body, or the scans do not overlap
            in space (less than 10% of the fixed body lies inside the moving scan).
        ValueError: an unknown ``method`` or ``initializer`` (a programming error).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if initializer not in INITIALIZERS:
        raise ValueError(f"initializer must be one of {INITIALIZERS}, got {initializer!r}")
    callback = progress or no_progress
    threads = int(threads or os.cpu_count() or 1)
    start = time.perf_counter()
    _check_volume(fixed, "fixed")
    _check_volume(moving, "moving")

    mask = body_mask_from_ct(fixed.array, dilation_vox=MASK_DILATION_VOX)
    if not mask.any():
        raise InputError(
            f"The {_name(fixed, 'fixed')} shows no body above -500 HU: give a CT volume in Hounsfield units."
        )
    fixed_image, moving_image = _float_image(fixed), _float_image(moving)
    mask_image = _mask_image(mask, fixed_image)

    centroid = fixed.index_to_lps(np.argwhere(mask).mean(axis=0)[::-1])
    if initializer == "geometry":
        rigid = sitk.Euler3DTransform(
            sitk.CenteredTransformInitializer(
                fixed_image, moving_image, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY
            )
        )
        # keep the mapping, move the centre of rotation to the body centroid
        offset = np.asarray(rigid.TransformPoint(tuple(centroid))) - centroid
        rigid.SetCenter(tuple(centroid))
        rigid.SetTranslation(tuple(offset))
    else:
        rigid = sitk.Euler3DTransform()
        rigid.SetCenter(tuple(centroid))

    overlap = _overlap_fraction(fixed, moving, mask, rigid)
    if overlap < MIN_OVERLAP_FRACTION:
        raise InputError(
            f"The {_name(moving, 'moving')} does not overlap the {_name(fixed, 'fixed')} in space "
            f"(only {overlap:.0%} of the body lies inside it): check that both are of the same patient "
            "and frame of reference, or use initializer='geometry'."
        )

    full_percentage = _sampling_percentages(mask, [1], metric_samples)[0]

    def metric_of(transform) -> float:
        return _metric_at_full_resolution(
            fixed_image, moving_image, mask_image, full_percentage, seed, threads, transform
        )

    stage_metrics = {"initial": metric_of(rigid)}
    final_stage = "none"
    budgets: list[int] = []
    if method in ("rigid", "bspline"):
        budgets += [rigid_iterations] * len(RIGID_SHRINK_FACTORS)
    if method == "bspline":
        budgets += [bspline_iterations] * len(BSPLINE_SHRINK_FACTORS)
    tracker = _Progress(callback, budgets or [1])
    transform: Any = rigid

    if method in ("rigid", "bspline"):
        reg = _new_method(mask_image, _sampling_percentages(mask, RIGID_SHRINK_FACTORS, metric_samples), seed, threads)
        reg.SetShrinkFactorsPerLevel(list(RIGID_SHRINK_FACTORS))
        reg.SetSmoothingSigmasPerLevel(list(RIGID_SMOOTHING_SIGMAS_VOX))
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        # learning rate and minimum step in mm of the largest voxel displacement (physical scales)
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=2.0,
            minStep=0.01,
            numberOfIterations=int(rigid_iterations),
            relaxationFactor=0.6,
            gradientMagnitudeTolerance=1e-6,
        )
        reg.SetOptimizerScalesFromPhysicalShift()
        reg.SetInitialTransform(rigid, inPlace=True)
        tracker.attach(reg)
        reg.Execute(fixed_image, moving_image)
        rigid = sitk.Euler3DTransform(rigid)
        transform, final_stage = rigid, "rigid"
        stage_metrics["rigid"] = metric_of(rigid)

    if method == "bspline":
        bspline = sitk.BSplineTransformInitializer(fixed_image, [int(n) for n in bspline_mesh_size], 3)
        reg = _new_method(
            mask_image, _sampling_percentages(mask, BSPLINE_SHRINK_FACTORS, bspline_metric_samples), seed, threads
        )
        reg.SetShrinkFactorsPerLevel(list(BSPLINE_SHRINK_FACTORS))
        reg.SetSmoothingSigmasPerLevel(list(BSPLINE_SMOOTHING_SIGMAS_VOX))
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        reg.SetOptimizerAsLBFGSB(
            gradientConvergenceTolerance=1e-5,
            numberOfIterations=int(bspline_iterations),
            maximumNumberOfCorrections=5,
            maximumNumberOfFunctionEvaluations=4 * int(bspline_iterations),
            costFunctionConvergenceFactor=1e7,
        )
        reg.SetMovingInitialTransform(rigid)
        reg.SetInitialTransform(bspline, inPlace=True)
        tracker.attach(reg)
        reg.Execute(fixed_image, moving_image)
        # p -> rigid(bspline(p)): a composite applies its last-added transform first
        composite = sitk.CompositeTransform([sitk.Euler3DTransform(rigid), bspline])
        stage_metrics["bspline"] = metric_of(composite)
        # MI ignores samples pushed out of the moving scan and can reward fitting noise: keep the
        # deformation only if it matches better at full resolution than the rigid stage alone.
        if stage_metrics["bspline"] < stage_metrics["rigid"]:
            transform, final_stage = composite, "bspline"

    tracker.finish()
    registered = resample_to(moving, fixed, transform, default_hu=-1024, interpolator="linear")
    registered = registered.with_array(
        np.clip(np.rint(registered.array), -32768, 32767).astype(np.int16, copy=False),
        registration_method=method,
        registration_final_stage=final_stage,
    )
    return RegistrationResult(
        registered=registered,
        transform=transform,
        method=method,
        metric_value=stage_metrics["initial" if final_stage == "none" else final_stage],
        iterations=tracker.iterations,
        seconds=time.perf_counter() - start,
        rigid_parameters=rigid_parameters(rigid),
        stage_metric_values=stage_metrics,
        final_stage=final_stage,
    )
