"""Which reads a study has: fully crossed, or split-plot (reader groups reading their own cases).

The scheduler (``study/schedule.py``) makes two designs:

- **fully crossed**: every reader reads every case in every modality;
- **split-plot**: the readers are in groups and each group reads its own block of cases, every
  case of the block in every modality (Obuchowski, Gallas & Hillis, Acad Radiol 2012;19:1508-1517;
  Hillis, Stat Med 2014;33:330-360). A fully crossed study is the split-plot with one group; a
  study where every reader reads different cases is the split-plot with one reader per group
  (MRMCaov's "cases nested within readers").

:func:`reading_design` finds the groups from the reads themselves (readers who read the same set
of cases form a group), so a long table needs no group column. Figures of merit and their
case-jackknife covariances are computed group by group: two readers of different groups read
independent cases, so the error covariance of their figures of merit is zero, not estimated.
With that covariance matrix the Obuchowski–Rockette formulas of the crossed design hold unchanged
(``or_variance.py``): Cov2 and Cov3 are averaged over all reader pairs, the pairs of different
groups contributing zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from DigitalContrastLib.common.errors import InputError

from .long_table import _natural_order, validate_long_table


@dataclass(frozen=True)
class ReaderGroup:
    """Readers who read the same cases, as arrays.

    Attributes:
        readers: the group's readers (natural order).
        cases: the group's cases (natural order).
        scores: float ``[modality, reader, case]`` (modalities of the design).
        truth: float ``[case]``: 0, 1 or NaN.
    """

    readers: tuple[str, ...]
    cases: tuple[str, ...]
    scores: np.ndarray
    truth: np.ndarray


@dataclass(frozen=True)
class ReadingDesign:
    """The reads of a study arranged by reader group (one group = fully crossed)."""

    modalities: tuple[str, ...]
    readers: tuple[str, ...]
    groups: tuple[ReaderGroup, ...]

    @property
    def is_split_plot(self) -> bool:
        return len(self.groups) > 1

    @property
    def kind(self) -> str:
        return "split-plot" if self.is_split_plot else "fully crossed"

    @property
    def n_cases(self) -> int:
        return sum(len(g.cases) for g in self.groups)

    @property
    def truth(self) -> np.ndarray:
        """Truth of every case, group after group ``[case]``."""
        return np.concatenate([g.truth for g in self.groups])

    def reader_indices(self, group: ReaderGroup) -> list[int]:
        return [self.readers.index(r) for r in group.readers]

    def same_group(self) -> np.ndarray:
        """Boolean ``[reader, reader]``: True where both readers are in the same group."""
        label = np.empty(len(self.readers), dtype=int)
        for g, group in enumerate(self.groups):
            label[self.reader_indices(group)] = g
        return label[:, None] == label[None, :]

    def describe(self) -> str:
        """One line: the design and its size."""
        if not self.is_split_plot:
            return f"fully crossed: {len(self.readers)} readers x {self.n_cases} cases x {len(self.modalities)} modalities"
        parts = "; ".join(f"{', '.join(g.readers)}: {len(g.cases)} cases" for g in self.groups)
        every = {1: "", 2: " in both modalities"}.get(len(self.modalities), f" in all {len(self.modalities)} modalities")
        return (f"split-plot: {len(self.groups)} reader groups, each reading its own cases{every} ({parts}); "
                f"{len(self.readers)} readers, {self.n_cases} cases")

    def covariance(
        self, per_group: Callable[[ReaderGroup], tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Figures of merit and their jackknife error covariance over the whole design.

        Args:
            per_group: ``group -> (theta [m, reader_g], theta_jack [m, reader_g, case_g])``: a figure
                of merit of each reader of the group over the group's cases and its leave-one-case-out
                values (any number ``m`` of modalities or contrasts).

        Returns:
            ``(theta [m, reader], cov [m, reader, m, reader])``: readers in the design's order; the
            covariance is the case jackknife within each group, ``(K_g - 1)/K_g · Σ_k dev·dev``,
            and zero between readers of different groups (independent cases).
        """
        theta = cov = None
        for group in self.groups:
            theta_g, jack_g = (np.asarray(a, dtype=float) for a in per_group(group))
            if theta is None:
                m, j = theta_g.shape[0], len(self.readers)
                theta = np.full((m, j), np.nan)
                cov = np.zeros((m, j, m, j))
            k = jack_g.shape[-1]
            dev = jack_g - jack_g.mean(axis=-1, keepdims=True)
            idx = self.reader_indices(group)
            theta[:, idx] = theta_g
            cov[np.ix_(range(m), idx, range(m), idx)] = np.einsum("ijk,lmk->ijlm", dev, dev) * ((k - 1) / k)
        return theta, cov


def select_modalities(frame: pd.DataFrame, modalities: Sequence[str] | None, source: str) -> tuple[pd.DataFrame, list[str]]:
    """The rows of the chosen modalities (default all, natural order) and their order."""
    present = _natural_order(frame["modality"].unique())
    if modalities is None:
        return frame, present
    chosen = [str(m) for m in modalities]
    unknown = [m for m in chosen if m not in present]
    if unknown:
        raise InputError(
            f"{source}: modality {unknown[0]!r} does not occur in the table (it has {', '.join(present)}); pick one of those.",
            code="unknown_modality",
        )
    return frame[frame["modality"].isin(chosen)], chosen


def _unbalanced(frame: pd.DataFrame, modalities: list[str], readers: list[str], cases: list[str], source: str) -> InputError:
    """The error naming the first missing read of the crossed ``[modality, reader] x case`` layout."""
    table = frame.pivot(index=["modality", "reader_id"], columns="case_id", values="score")
    index = pd.MultiIndex.from_product([modalities, readers], names=["modality", "reader_id"])
    values = table.reindex(index=index, columns=cases).to_numpy(dtype=float)
    missing = np.isnan(values)
    row, col = divmod(int(np.flatnonzero(missing)[0]), values.shape[1])
    modality, reader = index[row]
    return InputError(
        f"{source}: the design is unbalanced ({int(missing.sum())} read(s) missing, e.g. reader {reader!r}, case {cases[col]!r}, "
        f"modality {modality!r}); every reader must read every case of their reader group in every modality (fully crossed: "
        "one group; split-plot: groups reading disjoint cases), so drop the incomplete readers or cases first.",
        code="unbalanced",
    )


def reading_design(
    frame: pd.DataFrame,
    modalities: Sequence[str] | None = None,
    source: str = "the reading table",
) -> ReadingDesign:
    """Arrange a long table by reader group (see the module docstring).

    Readers who read exactly the same cases form a group; groups must read disjoint cases and every
    reader of a group must read every case of the group in every chosen modality.

    Raises:
        InputError: an unbalanced design (the first missing read is named), or a case whose truth
            differs between modalities.
    """
    frame = validate_long_table(frame, source)
    frame, chosen = select_modalities(frame, modalities, source)
    readers = [str(r) for r in _natural_order(frame["reader_id"].unique())]
    cases = [str(c) for c in _natural_order(frame["case_id"].unique())]
    read_by = frame.groupby("reader_id")["case_id"].apply(frozenset)
    members: dict[frozenset, list[str]] = {}
    for reader in readers:
        members.setdefault(read_by[reader], []).append(reader)
    case_sets = list(members)
    if any(a & b for i, a in enumerate(case_sets) for b in case_sets[i + 1:]):
        raise _unbalanced(frame, chosen, readers, cases, source)
    groups = []
    for case_set, group_readers in members.items():
        group_cases = [c for c in cases if c in case_set]
        rows = frame[frame["reader_id"].isin(group_readers)]
        table = rows.pivot(index=["modality", "reader_id"], columns="case_id", values="score")
        index = pd.MultiIndex.from_product([chosen, group_readers], names=["modality", "reader_id"])
        values = table.reindex(index=index, columns=group_cases).to_numpy(dtype=float)
        if np.isnan(values).any():
            raise _unbalanced(rows, chosen, group_readers, group_cases, source)
        groups.append((group_readers, group_cases, values.reshape(len(chosen), len(group_readers), len(group_cases))))
    per_case = frame.groupby("case_id")["truth"].agg(lambda t: t.dropna().nunique())
    if (per_case > 1).any():
        case = per_case.index[per_case.to_numpy() > 1][0]
        raise InputError(
            f"{source}: case {case!r} has a different truth in different modalities; a paired analysis needs one truth "
            "per case (for a Turing test use the Turing analysis).",
            code="inconsistent_truth",
        )
    truth = frame.groupby("case_id")["truth"].first()
    return ReadingDesign(
        modalities=tuple(chosen),
        readers=tuple(readers),
        groups=tuple(
            ReaderGroup(tuple(r), tuple(c), s, truth.reindex(c).to_numpy(dtype=float)) for r, c, s in groups
        ),
    )


@dataclass(frozen=True)
class CrossedScores:
    """A fully crossed reading table as arrays.

    Attributes:
        scores: float array ``[modality, reader, case]``.
        truth: float array ``[case]``: 0, 1 or NaN.
        modalities, readers, cases: the labels along each axis (strings).
    """

    scores: np.ndarray
    truth: np.ndarray
    modalities: tuple[str, ...]
    readers: tuple[str, ...]
    cases: tuple[str, ...]

    def modality_index(self, modality: str) -> int:
        return self.modalities.index(str(modality))


def crossed_scores(
    frame: pd.DataFrame,
    modalities: Sequence[str] | None = None,
    source: str = "the reading table",
) -> CrossedScores:
    """Arrange a checked long table as ``[modality, reader, case]``; every reader reads every case in every modality.

    ``modalities`` chooses and orders the modalities (default: all, in natural order).
    Raises ``InputError`` naming a missing (reader, case, modality) read when the design is unbalanced.
    """
    design = reading_design(frame, modalities, source)
    if design.is_split_plot:
        raise InputError(f"{source}: the design is unbalanced for a crossed analysis ({design.describe()}); every reader "
                         "must read every case in every modality here, or use an analysis of split-plot designs.",
                         code="unbalanced")
    group = design.groups[0]
    return CrossedScores(group.scores, group.truth, design.modalities, group.readers, group.cases)


def crossed_design(scores: np.ndarray, truth: np.ndarray, modalities: Sequence[str], readers: Sequence[str]) -> ReadingDesign:
    """A fully crossed design from arrays ``scores[modality, reader, case]`` and ``truth[case]``."""
    readers = tuple(str(r) for r in readers)
    cases = tuple(str(k + 1) for k in range(scores.shape[-1]))
    return ReadingDesign(tuple(str(m) for m in modalities), readers, (ReaderGroup(readers, cases, scores, truth),))
