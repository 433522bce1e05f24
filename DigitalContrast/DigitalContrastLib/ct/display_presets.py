"""Window/level presets for reviewing synthetic and real CT angiograms.

Slicer ships CT presets for abdomen (W 350 / L 40), bone, lung and brain but none for CT
angiography, so this module keeps the project's own table. Window and level are in HU; the
displayed grey ramp runs from ``level - window / 2`` (black) to ``level + window / 2`` (white).

Rationale for each preset (what a reader must tell apart in it):

``cta`` (W 700 / L 200)
    The usual CTA setting: −150…550 HU keeps an enhanced lumen (250–450 HU) bright but below
    white, so calcified plaque (300–1500 HU) still stands out, while soft tissue stays visible.
``aorta-lumen`` (W 600 / L 250)
    Centred on the diagnostic lumen threshold (≥ 250 HU): −50…550 HU spreads the lumen, the
    unenhanced intraluminal thrombus (30–90 HU) and the aortic wall over most of the grey ramp,
    which is what a lumen/thrombus boundary is judged on.
``calcium`` (W 1500 / L 450)
    −300…1200 HU: an enhanced lumen turns mid-grey so dense calcified plaque (≥ 700 HU) and
    bone remain distinguishable from contrast instead of both saturating to white.
``soft-tissue`` (W 400 / L 40)
    The standard abdominal soft-tissue window (−160…240 HU), used for the non-contrast scan:
    unenhanced blood (30–65 HU), thrombus, fat and muscle separate best here.

These are conventional radiology settings (the CTA and soft-tissue values are the common
defaults of CT consoles and PACS; the aorta-lumen and calcium windows follow from the HU ranges
in NOTES-synthesis.md). They are a starting point that a reader can always change.
"""

from __future__ import annotations

from dataclasses import dataclass

from DigitalContrastLib.common.errors import JobError


@dataclass(frozen=True)
class WindowLevel:
    """A named window/level in HU.

    Attributes:
        name: preset key (``"cta"``...).
        window_hu: width of the displayed HU range (> 0).
        level_hu: centre of the displayed HU range.
        description: one line for a menu or tooltip.
    """

    name: str
    window_hu: float
    level_hu: float
    description: str

    @property
    def range_hu(self) -> tuple[float, float]:
        """``(lowest, highest)`` HU of the grey ramp (black, white)."""
        return (self.level_hu - self.window_hu / 2.0, self.level_hu + self.window_hu / 2.0)


PRESETS: dict[str, WindowLevel] = {
    p.name: p
    for p in (
        WindowLevel("cta", 700.0, 200.0, "CT angiography: enhanced lumen bright, calcium still visible"),
        WindowLevel("aorta-lumen", 600.0, 250.0, "Aortic lumen versus thrombus and wall"),
        WindowLevel("calcium", 1500.0, 450.0, "Calcified plaque versus contrast-filled lumen"),
        WindowLevel("soft-tissue", 400.0, 40.0, "Soft tissue / non-contrast CT (unenhanced blood, thrombus)"),
    )
}

#: The preset the non-contrast scan is shown with in the review layout.
NON_CONTRAST_PRESET = "soft-tissue"
#: The preset synthetic and real contrast scans share in the review layout.
CONTRAST_PRESET = "cta"


def get_preset(name: str) -> WindowLevel:
    """The preset called ``name``; a :class:`JobError` naming the valid choices otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        choices = ", ".join(sorted(PRESETS))
        raise JobError(f"Unknown window/level preset '{name}': choose one of {choices}.", code="bad_preset") from None
