"""The pure parts: decoder, schedules, Retry-After, streaming output."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from replicate_home import AdaptiveSchedule, FixedSchedule, Prediction, UnexpectedResponseFormat
from replicate_home._decode import decode_json_object, require_string
from replicate_home._exceptions import EXCERPT_LIMIT
from replicate_home._models import StreamedChunks
from replicate_home._output import ImageScan, TextStream, image_urls, text_chunks
from replicate_home._schedule import RetryPolicy, parse_retry_after

# -- decoder ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "x"}',
        b'\xef\xbb\xbf{"id": "x"}',
        b'  {"id": "x"}\n',
        '{"id": "x", "é": 1}'.encode(),
    ],
)
def test_decoder_reads_json_objects(body: bytes) -> None:
    data, _text = decode_json_object(body)
    assert data["id"] == "x"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"<html><body>502 Bad Gateway</body></html>", "not JSON"),
        (b'{"id": "x"', "not JSON"),
        (b"[1, 2]", "array"),
        (b"null", "null"),
        (b'"text"', "string"),
        (b"12", "number"),
        (b"1" * 5000, "JSON"),
        (b"[" * 100_000, "JSON"),
    ],
)
def test_decoder_rejects_what_is_not_a_json_object(body: bytes, reason: str) -> None:
    with pytest.raises(UnexpectedResponseFormat, match=reason) as caught:
        decode_json_object(body)
    assert str(caught.value).startswith("Unexpected response format: ")
    assert caught.value.text == body.decode("utf-8", "replace")


def test_decoder_error_shows_a_bounded_excerpt_and_keeps_the_whole_body() -> None:
    body = "<html>" + "x" * 10_000 + "</html>"
    with pytest.raises(UnexpectedResponseFormat) as caught:
        decode_json_object(body.encode())
    assert len(str(caught.value)) < EXCERPT_LIMIT + 100
    assert caught.value.text == body


@pytest.mark.parametrize("value", [None, 3, "", ["x"], {"a": 1}])
def test_require_string_rejects_missing_or_wrong_types(value: object) -> None:
    data = {} if value is None else {"id": value}
    with pytest.raises(UnexpectedResponseFormat, match="'id'"):
        require_string(data, "id", json.dumps(data))


# -- schedules -------------------------------------------------------------------------


def test_adaptive_schedule_starts_fast_and_backs_off_to_its_cap() -> None:
    schedule = AdaptiveSchedule()
    delays = [schedule.delay(n) for n in range(40)]
    assert delays[0] == pytest.approx(0.1)
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert delays[-1] == schedule.maximum
    assert schedule.delay(10**9) == schedule.maximum  # no overflow
    # A prediction that takes 1 s is seen within 15% of its duration (+ 50 ms).
    times, elapsed = [], 0.0
    for n in range(40):
        elapsed += schedule.delay(n)
        times.append(elapsed)
    first_after = min(t for t in times if t >= 1.0)
    assert first_after - 1.0 <= 0.15 + 0.05


def test_fixed_schedule_is_fixed() -> None:
    assert {FixedSchedule(5).delay(n) for n in range(10)} == {5}


@pytest.mark.parametrize(
    "kwargs", [{"initial": 0}, {"factor": 0.5}, {"maximum": float("nan")}, {"initial": 5}]
)
def test_adaptive_schedule_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by field
        AdaptiveSchedule(**kwargs)


def test_retry_policy_backs_off_and_honours_retry_after() -> None:
    policy = RetryPolicy(initial=0.25, factor=2, maximum=8)
    assert [policy.delay(n) for n in range(7)] == [0.25, 0.5, 1, 2, 4, 8, 8]
    assert policy.delay(3, retry_after=0.1) == 0.1
    assert policy.delay(10**6) == 8


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after("3") == 3
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None
    for bad in ("soon", "-1", "nan", "inf", ""):
        assert parse_retry_after(bad) is None
    date = (now + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(date, now) == pytest.approx(30)
    past = (now - timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(past, now) == 0


# -- streaming output ------------------------------------------------------------------


def test_text_chunks_shapes() -> None:
    assert text_chunks(None) == []
    assert text_chunks("abc") == ["abc"]
    assert text_chunks(["a", "b"]) == ["a", "b"]
    assert text_chunks(["a", 1]) is None
    assert text_chunks({"a": 1}) is None


def test_text_stream_yields_growth_once_split_as_the_service_split_it() -> None:
    stream = TextStream()
    assert stream.advance([], final=False) == []
    assert stream.advance(["Hel"], final=False) == ["Hel"]
    assert stream.advance(["Hello", " wor"], final=False) == ["lo", " wor"]
    assert stream.advance(["Hel"], final=False) == []  # a stale, shorter answer
    assert stream.advance(["Hello", " world", "!"], final=True) == ["ld", "!"]
    assert stream.delivered == "Hello world!"


def test_text_stream_single_string_never_goes_character_by_character() -> None:
    stream = TextStream()
    assert stream.advance(["A whole answer"], final=True) == ["A whole answer"]


@pytest.mark.parametrize(
    ("before", "after", "final"),
    [(["Hello"], ["Help"], False), (["ab", "c"], ["ab", "x"], False), (["abc"], ["ab"], True)],
)
def test_text_stream_reports_rewrites(before: list[str], after: list[str], final: bool) -> None:
    stream = TextStream()
    assert stream.advance(before, final=False) is not None
    assert stream.advance(after, final=final) is None
    assert stream.delivered == "".join(before)


def test_image_urls_takes_every_url() -> None:
    assert image_urls("https://x/1.png") == ["https://x/1.png"]
    assert image_urls(["https://x/1.png", "https://x/2.png"]) == [
        "https://x/1.png",
        "https://x/2.png",
    ]
    for bad in (None, [], [""], [1], {"url": "x"}):
        with pytest.raises(UnexpectedResponseFormat, match="image URLs"):
            image_urls(bad)


def test_text_stream_after_streamed_text_folds_line_endings_only() -> None:
    stream = TextStream()
    stream.fold_line_endings()
    assert stream.advance(["a\nb\n"], final=False) == ["a\nb\n"]  # as SSE delivered it
    assert stream.advance(["a\r", "\nb\r\n", "c"], final=False) == ["c"]
    assert stream.advance(["a\nb"], final=False) == []  # stale, shorter
    assert stream.advance(["a\r\nb\r\ncd", "e\r"], final=True) == ["d", "e\r"]
    other = TextStream()
    other.fold_line_endings()
    assert other.advance(["ab"], final=False) == ["ab"]
    assert other.advance(["ax"], final=True) is None  # a real rewrite is still one


# -- streamed chunks: a view, and a remembered position --------------------------------


def test_streamed_chunks_is_a_snapshot_of_a_growing_list() -> None:
    growing = ["a", "b"]
    view = StreamedChunks(growing)
    growing.append("c")
    assert len(view) == 2
    assert list(view) == ["a", "b"]
    assert view == ["a", "b"]
    assert ["a", "b"] == view  # noqa: SIM300  # the list's side of the comparison
    assert view != ["a", "b", "c"]
    assert view[-1] == "b"
    assert view[0:5] == ["a", "b"]
    assert view.tail(1) == ["b"]
    assert repr(view) == "['a', 'b']"
    with pytest.raises(IndexError):
        view[2]
    assert text_chunks(view) is view
    prediction = Prediction("p", "m", None, "processing", output=view, streamed=True)
    assert prediction.text == "ab"


@given(
    before=st.lists(st.text(alphabet="ab\r\n", max_size=3), max_size=3),
    # An event's data never holds a CR (the SSE parser splits lines there).
    streamed=st.lists(st.text(alphabet="ab\n", max_size=3), max_size=12),
    final=st.lists(st.text(alphabet="ab\r\n", max_size=3), max_size=15),
)
# Found by this property: a poll's CR, then a stream's LF, reads as one CRLF.
@example(before=["\r"], streamed=["\n\n", ""], final=[])
@example(before=["\r"], streamed=["\n", "\n", ""], final=[])
def test_a_stream_read_by_position_yields_what_a_full_comparison_yields(
    before: list[str], streamed: list[str], final: list[str]
) -> None:
    """Feeding the views of one growing stream (the engine's way) gives, event by event,
    what feeding full copies of the chunks gave: the fast path changes only the cost."""
    by_view, by_copy = TextStream(), TextStream()
    for stream in (by_view, by_copy):
        assert stream.advance(before, final=False) is not None
        stream.fold_line_endings()
    growing: list[str] = []
    for chunk in streamed:
        growing.append(chunk)
        fast = by_view.advance(StreamedChunks(growing), final=False)
        full = by_copy.advance(list(growing), final=False)
        assert fast == full
        if full is None:
            return
        assert by_view.delivered == by_copy.delivered
    assert by_view.advance(final, final=True) == by_copy.advance(final, final=True)
    assert by_view.delivered == by_copy.delivered


def test_image_scan_looks_only_at_new_chunks_of_a_stream() -> None:
    scan, growing = ImageScan(), ["https://x/1.png"]
    assert scan(StreamedChunks(growing))
    growing.append("https://x/2.png")
    assert scan(StreamedChunks(growing))
    growing.append("text")
    assert not scan(StreamedChunks(growing))
    growing.append("https://x/3.png")
    assert not scan(StreamedChunks(growing))  # once text, always text
    assert not scan(StreamedChunks([]))
    assert scan(["https://x/1.png"])
