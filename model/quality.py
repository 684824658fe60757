"""Quality gates at publish: how a new model's answers compare with the active model's.

A model can pass every technical check and still be useless: a constant model gives the
same three hobbies to everyone, and a model whose label list is in the wrong order gives
confident answers under the wrong names. Both went live before. The report covers all 256
possible inputs (the whole input space, so it is exact, not a sample):

- ``top1Agreement``: share of inputs whose best hobby is the active model's best;
- ``top3Agreement``: share of inputs given the same three hobbies (in any order), i.e. the
  same recommendation; this is what ``requireAgreement`` is compared with;
- ``top3Counts``: how often each hobby appears in a top 3 (and ``activeTop3Counts``);
- ``distinctTop3``: how many different ranked top-3 lists the model gives at all (a
  degenerate model gives one: the same three hobbies, in the same order, to everyone).

Refused: a degenerate model (one top 3 for every input) unless explicitly allowed; a model
below the required agreement; and a model whose outputs are exactly the active model's,
column for column, under a reordered label list (labels in the wrong order).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from model.modelfile import ModelFileError

Top3 = Sequence[Sequence[int]]


@dataclass(frozen=True)
class QualityReport:
    inputs: int
    distinct_top3: int
    top3_counts: dict[str, int]
    compared_with: str | None = None
    active_top3_counts: dict[str, int] | None = None
    top1_agreement: float | None = None
    top3_agreement: float | None = None
    labels_reordered: bool = False  # same outputs as the active model under other names

    @property
    def degenerate(self) -> bool:
        return self.distinct_top3 <= 1

    def describe(self) -> dict[str, Any]:
        """camelCase, for the admin API and the CLI."""
        return {
            "inputs": self.inputs,
            "comparedWith": self.compared_with,
            "top1Agreement": self.top1_agreement,
            "top3Agreement": self.top3_agreement,
            "distinctTop3": self.distinct_top3,
            "degenerate": self.degenerate,
            "top3Counts": self.top3_counts,
            "activeTop3Counts": self.active_top3_counts,
        }


def compare(
    labels: Sequence[str],
    top3: Top3,
    reference: tuple[str, Sequence[str], Top3] | None = None,
) -> QualityReport:
    """The report for a model (`labels`, each input's top 3 as output indexes), against
    `reference` = (version, labels, top 3) of the active model when there is one."""
    named = [tuple(labels[i] for i in row) for row in top3]
    counts = _counts(named, labels)
    distinct = len(set(named))
    if reference is None:
        return QualityReport(len(named), distinct, counts)
    version, reference_labels, reference_top3 = reference
    theirs = [tuple(reference_labels[i] for i in row) for row in reference_top3]
    inputs = len(named)
    top1 = sum(a[0] == b[0] for a, b in zip(named, theirs, strict=True)) / inputs
    top3_same = sum(set(a) == set(b) for a, b in zip(named, theirs, strict=True)) / inputs
    reordered = (
        tuple(labels) != tuple(reference_labels)
        and sorted(labels) == sorted(reference_labels)
        and [tuple(row) for row in top3] == [tuple(row) for row in reference_top3]
        and top3_same < 1
    )
    return QualityReport(
        inputs=inputs,
        distinct_top3=distinct,
        top3_counts=counts,
        compared_with=version,
        active_top3_counts=_counts(theirs, reference_labels),
        top1_agreement=round(top1, 4),
        top3_agreement=round(top3_same, 4),
        labels_reordered=reordered,
    )


def enforce(
    report: QualityReport, *, allow_degenerate: bool = False, require_agreement: float | None
) -> None:
    """Raise `ModelFileError` (the upload's 422, the CLI's "model refused") if a gate fails."""
    if report.degenerate and not allow_degenerate:
        only = [label for label, count in report.top3_counts.items() if count]
        raise ModelFileError(
            f"degenerate model: it gives the same three hobbies ({', '.join(only)}) for all "
            f"{report.inputs} inputs; allow it explicitly (allowDegenerate / "
            "--allow-degenerate) if that is intended"
        )
    if report.labels_reordered:
        raise ModelFileError(
            f"labels in the wrong order: its outputs are exactly those of the active model "
            f"{report.compared_with}, with the label list reordered"
        )
    if (
        require_agreement is not None
        and report.top3_agreement is not None
        and report.top3_agreement < require_agreement
    ):
        raise ModelFileError(
            f"it agrees with the active model {report.compared_with} on "
            f"{report.top3_agreement:.1%} of inputs (same top 3), below the required "
            f"{require_agreement:.1%}"
        )


def _counts(named: list[tuple[str, ...]], labels: Sequence[str]) -> dict[str, int]:
    counter = Counter(label for row in named for label in row)
    return {label: counter.get(label, 0) for label in labels}
