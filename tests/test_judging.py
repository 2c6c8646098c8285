"""Judge models, the pure part: the prompt a judge gets and the reading of its answer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicate_home.comparisons import Judge, Verdict, judge_prompt, parse_score
from replicate_home.comparisons._judging import OUTPUT_LIMIT

JUDGE = Judge("meta/meta-llama-3-8b-instruct", "Is the answer correct and short?")


def test_the_prompt_holds_rubric_prompt_and_output_and_asks_for_a_score_line() -> None:
    text = judge_prompt(JUDGE, "What is 2+2?", "4", image=False)
    assert "<rubric>\nIs the answer correct and short?\n</rubric>" in text
    assert "<prompt>\nWhat is 2+2?\n</prompt>" in text
    assert "<output>\n4\n</output>" in text
    assert "from 1 (worst) to 10 (best)" in text
    assert text.endswith("SCORE: <number>")


def test_an_image_is_attached_not_quoted_and_a_long_output_is_cut() -> None:
    values = JUDGE.call_input("a cat", None, "https://example.test/cat.png")
    assert values["image"] == "https://example.test/cat.png"
    assert "the attached image" in values["prompt"]
    assert "<output>" not in values["prompt"]
    long = judge_prompt(JUDGE, None, "x" * (OUTPUT_LIMIT + 5), image=False)
    assert "[... 5 more characters not shown]" in long
    assert "no prompt" in long
    custom = Judge("m/v", "r", scale=(0, 1), image_input="img", input={"temperature": 0})
    values = custom.call_input("p", None, "u")
    assert values["img"] == "u"
    assert values["temperature"] == 0
    assert "from 0 (worst) to 1 (best)" in values["prompt"]


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ("Correct and short.\nSCORE: 9", 9),
        ("score: 7", 7),
        ("**Score:** 8/10", 8),
        ("Reasons.\n\nScore = 6.5\n", 6.5),
        ("## SCORE: 3.", 3),
        ('{"reason": "fine", "score": 5}', 5),
        ('```json\n{"score": 4, "reason": "meh"}\n```', 4),
        ("SCORE: 9\nTo repeat: SCORE: 9", 9),
    ],
)
def test_answers_that_parse(answer: str, score: float) -> None:
    assert parse_score(answer) == Verdict(answer, score)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("I would give it a nine.", "no SCORE line"),
        ("", "no SCORE line"),
        ("SCORE: 3\nSCORE: 8", "conflicting scores (3, 8)"),
        ("SCORE: 11", "off the scale 1-10"),
        ("SCORE: 0", "off the scale"),
        ("SCORE: 4/5", "out of 5"),
        ("The score: 7 is what I think, or maybe 8", "no SCORE line"),
        ('{"score": "high"}', "no SCORE line"),
        ('{"score": true}', "no SCORE line"),
    ],
)
def test_answers_that_do_not_parse_are_unscored_with_the_answer_kept(
    answer: str, reason: str
) -> None:
    verdict = parse_score(answer)
    assert verdict.score is None
    assert not verdict.scored
    assert verdict.answer == answer
    assert reason in verdict.reason


@given(st.text())
def test_any_answer_is_read_without_error_and_kept(answer: str) -> None:
    verdict = parse_score(answer)
    assert verdict.answer == answer
    assert verdict.score is None or 1 <= verdict.score <= 10


@given(st.integers(1, 10), st.text(alphabet=st.characters(blacklist_characters="0123456789")))
def test_a_score_line_after_any_reasoning_is_read(score: int, reasons: str) -> None:
    assert parse_score(f"{reasons}\nSCORE: {score}").score == score


def test_judges_are_checked_and_round_trip() -> None:
    with pytest.raises(ValueError, match="rubric"):
        Judge("m/v", " ")
    with pytest.raises(ValueError, match="model"):
        Judge("", "r")
    with pytest.raises(ValueError, match="scale"):
        Judge("m/v", "r", scale=(5, 5))
    judge = Judge("m/v", "r", scale=(0, 100), input={"max_tokens": 50})
    assert Judge.from_json(judge.to_json()) == judge
