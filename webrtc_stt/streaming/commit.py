"""LocalAgreement commit policy: text two successive decodes agree on becomes stable.

Pure and deterministic. Words are compared without case and punctuation so "you," and
"you." agree; the newest spelling is the one committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from webrtc_stt.streaming.filters import normalized


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
    """Commits what the last ``agreement`` hypotheses share, minus a holdback.

    ``holdback`` words at the growing edge of the agreement stay tentative: the last word
    of a window is often cut mid-way ("stuff" that becomes "stuffed") even when decodes
    agree on it. Hypotheses from windows too short to trust are passed with
    ``commit=False``: they count for agreement later but commit nothing themselves.
    """

    def __init__(self, holdback: int = 1, committed: Sequence[str] = (), agreement: int = 2
                 ) -> None:
        if agreement < 2:
            raise ValueError("agreement needs at least two hypotheses")
        self._holdback = holdback
        self._agreement = agreement
        self._committed: list[str] = list(committed)
        self._recent: list[list[str]] = []

    @property
    def committed(self) -> tuple[str, ...]:
        """Words that will never change."""
        return tuple(self._committed)

    def committed_text(self) -> str:
        """The committed words as one string."""
        return " ".join(self._committed)

    def update(self, words: Sequence[str], *, commit: bool = True) -> Hypothesis:
        """Take a new full hypothesis of the segment (committed words first)."""
        # The decoder is forced to continue the committed text, so it leads every hypothesis.
        new = list(words[len(self._committed) :])
        self._recent = [*self._recent, new][-self._agreement :]
        if commit and len(self._recent) == self._agreement:
            agreed = min(_common_prefix(self._recent[0], other) for other in self._recent[1:])
            take = max(0, agreed - self._holdback)
            if take:
                self._committed.extend(new[:take])
                self._recent = [h[take:] for h in self._recent]
                new = new[take:]
        return Hypothesis(tuple(self._committed), tuple(new))


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if normalized(x) != normalized(y) or not normalized(x):
            break
        n += 1
    return n


class PartialDisplay:
    """Decides what a partial shows, so captions do not flicker.

    A partial shows the committed words and the tentative ones except the last (the word
    at the edge of the window, usually cut mid-way). An update that would change words
    already on screen is held back until a second decode confirms the change; updates that
    only add words go out at once.
    """

    def __init__(self) -> None:
        self._shown: list[str] = []
        self._previous: list[str] | None = None

    def show(self, hypothesis: Hypothesis) -> list[str] | None:
        """The words to show now, or None to leave the screen as it is."""
        committed = list(hypothesis.committed)
        tentative = list(hypothesis.tentative)
        words = committed + tentative[: max(0, len(tentative) - 1)]
        previous, self._previous = self._previous, words
        if not words or words == self._shown:
            return None
        if _common_prefix(words, self._shown) == len(self._shown) or (
            previous is not None
            and _common_prefix(words, previous) > _common_prefix(words, self._shown)
        ):
            self._shown = words
            return words
        return None
