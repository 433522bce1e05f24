"""How a scanner and its reconstruction form a phantom's images: noise level and texture, calibration, kVp.

:func:`~DigitalContrastLib.phantoms.generator.make_phantom` draws each case's noise SD and the peak of
its noise power spectrum from a :class:`ScannerProfile`'s ranges (the default profile gives the
project's phantoms, voxel for voxel), scales the iodine enhancement by its ``iodine_gain`` (a lower
tube voltage raises the HU of iodine) and adds its ``hu_offset`` to both scans (a calibration
offset of the scanner). The DICOM facts (manufacturer, model, kVp, kernel) label the series that
:mod:`~DigitalContrastLib.phantoms.site_pairs` writes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ScannerProfile:
    """One scanner and reconstruction.

    Attributes:
        name: a short name for reports.
        noise_sigma_hu: range of each scan's noise SD (HU), drawn per scan.
        nps_peak_per_mm: range of the noise power spectrum's peak (mm^-1): a sharper kernel peaks
            higher (limited by the grid's Nyquist frequency).
        hu_offset: HU added to every voxel of both scans (calibration offset).
        iodine_gain: factor on the enhancement (contrast minus non-contrast, noise-free).
        manufacturer, model, kvp, kernel: DICOM facts of the series written.
    """

    name: str = "phantom default"
    noise_sigma_hu: tuple[float, float] = (8.0, 25.0)
    nps_peak_per_mm: tuple[float, float] = (0.2, 0.3)
    hu_offset: float = 0.0
    iodine_gain: float = 1.0
    manufacturer: str = "DigitalContrast phantom"
    model: str = "procedural"
    kvp: float = 120.0
    kernel: str = "STANDARD"

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


#: The project's phantoms (what :func:`make_phantom` draws without a profile).
DEFAULT_SCANNER = ScannerProfile()
#: A second site's scanner: a sharp reconstruction kernel (fine-grained noise), 100 kVp (iodine
#: about 25 % brighter than at 120 kVp) and a calibration 25 HU above water.
SHIFTED_SCANNER = ScannerProfile(name="site B: sharp kernel, 100 kVp, +25 HU offset", noise_sigma_hu=(12.0, 22.0),
                                 nps_peak_per_mm=(0.42, 0.5), hu_offset=25.0, iodine_gain=1.25,
                                 manufacturer="DigitalContrast phantom site B", model="procedural-B", kvp=100.0,
                                 kernel="SHARP B70")
SCANNERS = {"default": DEFAULT_SCANNER, "shifted": SHIFTED_SCANNER}
