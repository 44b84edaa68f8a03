"""LocalAgreement: what two decodes agree on is committed and never changes."""

from __future__ import annotations

from webrtc_stt.asr.commit import LocalAgreement


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
