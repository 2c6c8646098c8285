"""The emulator's search, pure rules: words, scores and ranking (no I/O)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from replicate_home.emulator._directory import COLLECTIONS, HARDWARE, PAGES, hardware_skus
from replicate_home.emulator._search import rank, score, words


def test_words_are_lowercase_letters_and_digits_in_any_script() -> None:
    assert words("SDXL-Lightning 4step, Übersetzung_v2") == [
        "sdxl",
        "lightning",
        "4step",
        "übersetzung",
        "v2",
    ]


def test_a_query_word_matches_the_start_of_a_word_in_the_heaviest_field() -> None:
    fields = [("replicate/upscaler", 3.0), ("An emulated image upscaling model", 1.0)]
    assert score(words("upscal"), fields) == 3.0
    assert score(words("upscal image"), fields) == 2.0  # (3 + 1) / 2
    assert score(words("scaling"), fields) == 0.0  # a word's middle is no match
    assert score([], fields) == 0.0


def test_rank_keeps_matches_only_best_first_ties_in_order_and_limited() -> None:
    scored = [("a", 1.0), ("b", 0.0), ("c", 2.0), ("d", 1.0)]
    assert rank(scored) == [("c", 2.0), ("a", 1.0), ("d", 1.0)]
    assert rank(scored, limit=2) == [("c", 2.0), ("a", 1.0)]


@given(
    st.lists(st.text(max_size=12), max_size=4),
    st.lists(st.tuples(st.text(max_size=30), st.floats(0.0, 5.0)), max_size=4),
)
def test_a_score_is_between_zero_and_the_heaviest_field(
    query: list[str], fields: list[tuple[str, float]]
) -> None:
    terms = [term for text in query for term in words(text)]
    value = score(terms, fields)
    assert 0.0 <= value <= max((weight for _, weight in fields), default=0.0) + 1e-6


@given(st.lists(st.tuples(st.integers(), st.floats(-1.0, 5.0)), max_size=20))
def test_rank_is_sorted_and_keeps_each_match_once(scored: list[tuple[int, float]]) -> None:
    ranked = rank(scored)
    assert [value for _, value in ranked] == sorted((v for _, v in ranked), reverse=True)
    assert sorted(ranked) == sorted(pair for pair in scored if pair[1] > 0)


def test_the_directory_is_well_formed() -> None:
    assert len(hardware_skus()) == len(HARDWARE)
    assert [item["sku"] for item in HARDWARE[:4]] == [
        "cpu",
        "gpu-t4",
        "gpu-a40-small",
        "gpu-a40-large",
    ]
    slugs = [collection.slug for collection in COLLECTIONS]
    assert len(set(slugs)) == len(slugs)
    assert all(collection.kinds for collection in COLLECTIONS)
    assert all(page.href.startswith("/docs/") for page in PAGES)
