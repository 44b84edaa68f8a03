"""LocalAgreement commit policy: text two successive decodes agree on becomes stable.

Pure and deterministic. Words are compared without case and punctuation so "you," and
"you." agree; the newest spelling is the one committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from webrtc_stt.asr.filters import normalized


@dataclass(frozen=True)
class Hypothesis:
    """The words of a segment as the latest decode sees them."""

    committed: tuple[str, ...]
    tentative: tuple[str, ...]

    @property
    def text(self) -> str:
        """Committed and tentative words as one string."""
        return " ".join(self.committed + self.tentative)

    @property
    def committed_text(self) -> str:
        """Only the committed words."""
        return " ".join(self.committed)


class LocalAgreement:
    """Commits the longest common prefix of the last two hypotheses, minus a holdback.

    ``holdback`` words at the growing edge of the agreement stay tentative: the last word
    of a window is often cut mid-way ("stuff" that becomes "stuffed") even when two decodes
    agree on it.
    """

    def __init__(self, holdback: int = 1, committed: Sequence[str] = ()) -> None:
        self._holdback = holdback
        self._committed: list[str] = list(committed)
        self._previous: list[str] | None = None

    @property
    def committed(self) -> tuple[str, ...]:
        """Words that will never change."""
        return tuple(self._committed)

    def committed_text(self) -> str:
        """The committed words as one string."""
        return " ".join(self._committed)

    def update(self, words: Sequence[str]) -> Hypothesis:
        """Take a new full hypothesis of the segment (committed words first)."""
        # The decoder is forced to continue the committed text, so it leads every hypothesis.
        new = list(words[len(self._committed) :])
        if self._previous is not None:
            agreed = _common_prefix(self._previous, new)
            take = max(0, agreed - self._holdback)
            self._committed.extend(new[:take])
            new = new[take:]
        self._previous = new
        return Hypothesis(tuple(self._committed), tuple(new))


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if normalized(x) != normalized(y) or not normalized(x):
            break
        n += 1
    return n
