"""LocalAgreement: what two decodes agree on is committed and never changes."""

from __future__ import annotations

from webrtc_stt.streaming.commit import LocalAgreement


def test_first_hypothesis_commits_nothing() -> None:
    agreement = LocalAgreement(holdback=0)
    hyp = agreement.update("and so my".split())
    assert hyp.committed == ()
    assert hyp.text == "and so my"


def test_agreement_commits_common_prefix_minus_holdback() -> None:
    agreement = LocalAgreement(holdback=1)
    agreement.update("and so my fell".split())
    hyp = agreement.update("and so my fellow americans".split())
    assert hyp.committed == ("and", "so")
    assert hyp.tentative == ("my", "fellow", "americans")
    assert hyp.committed_text == "and so"


def test_comparison_ignores_case_and_punctuation_and_keeps_newest_spelling() -> None:
    agreement = LocalAgreement(holdback=0)
    agreement.update("And so, my".split())
    hyp = agreement.update("and so my friends".split())
    assert hyp.committed == ("and", "so", "my")


def test_committed_words_lead_later_hypotheses_and_are_never_retracted() -> None:
    agreement = LocalAgreement(holdback=0)
    agreement.update("ask not what".split())
    agreement.update("ask not what your".split())
    assert agreement.committed == ("ask", "not", "what")
    # The decoder continues the committed words; a disagreement after them commits nothing.
    hyp = agreement.update("ask not what my country".split())
    assert hyp.committed == ("ask", "not", "what")
    assert hyp.tentative == ("my", "country")


def test_disagreement_at_the_start_commits_nothing() -> None:
    agreement = LocalAgreement(holdback=0)
    agreement.update("like your gun".split())
    hyp = agreement.update("what your country".split())
    assert hyp.committed == ()


def test_display_drops_the_edge_word_and_holds_unconfirmed_changes() -> None:
    from webrtc_stt.streaming.commit import Hypothesis, PartialDisplay

    display = PartialDisplay()
    assert display.show(Hypothesis((), ("stuff",))) is None  # only the edge word
    assert display.show(Hypothesis((), ("he", "could", "wait"))) == ["he", "could"]
    # Extending what is shown goes out at once.
    assert display.show(Hypothesis((), ("he", "could", "wait", "no"))) == ["he", "could", "wait"]
    # A change to shown words waits for a second decode to confirm it...
    assert display.show(Hypothesis((), ("we", "could", "wait", "now"))) is None
    assert display.show(Hypothesis((), ("we", "could", "wait", "now", "so"))) == [
        "we", "could", "wait", "now",
    ]
    # ...and an unconfirmed one-off never reaches the screen.
    assert display.show(Hypothesis((), ("he", "could", "wait", "now", "so", "on"))) is None
