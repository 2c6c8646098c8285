"""Property tests of the response decoder: any JSON object under any content type is read,
anything else is an :class:`UnexpectedResponseFormat`, never a ``KeyError``,
``TypeError``, ``UnicodeDecodeError`` or ``json.JSONDecodeError``.

The pure decoder is checked directly; the content-type fallback and the field checks are
also checked through the real engine over an in-process transport, on asyncio and trio.
"""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from replicate_home import ReplicateHomeError, UnexpectedResponseFormat
from replicate_home._decode import decode_json_object
from replicate_home._engine import Engine
from replicate_home._exceptions import EXCERPT_LIMIT
from replicate_home._home import HomeService
from replicate_home._run import stream_chunks
from replicate_home._schedule import FixedSchedule, RetryPolicy

BASE = "http://service.test"
PREFIX = "Unexpected response format: "

#: The longest message the error may have, whatever the body: the prefix, the excerpt
#: (``repr`` writes a character as at most 10: ``\U0010ffff``), the cut marker, the reason.
MESSAGE_BOUND = len(PREFIX) + 2 + 10 * (EXCERPT_LIMIT + 40) + 200

# -- strategies ----------------------------------------------------------------------------

#: Characters a URL, a codec or a parser may trip on, made likely. A lone surrogate is
#: legal in JSON text (written ``\udfff``) though not in UTF-8; only a low one is drawn, so
#: two never pair up into one character.
tricky_characters = st.sampled_from(
    ["\udfff", "\x00", "\ufeff", "/", "?", "&", "#", "%", "+", " ", '"', "\\", "\u2028"]
)
#: Any string JSON can carry. (A list joined: ``st.text`` leaves surrogates out.)
json_strings = st.lists(st.characters() | tricky_characters, max_size=10).map("".join)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    json_strings,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_strings, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(json_strings, json_values, max_size=6)

#: The whitespace JSON allows around a value.
json_space = st.text(alphabet=" \t\r\n", max_size=3)

#: Content types a server has been seen to send with JSON, and garbage (any Latin-1 bytes
#: a header value can carry).
content_types = st.one_of(
    st.sampled_from(
        [
            None,
            b"application/json",
            b"application/json; charset=utf-8",
            b"application/json;charset=UTF-8",
            b"text/plain",
            b"text/plain; charset=iso-8859-1",
            b"text/html; charset=utf-8",
            b"application/octet-stream",
            b"",
            b"garbage/;;",
            b"application/problem+json",
        ]
    ),
    st.binary(max_size=30).filter(lambda value: b"\r" not in value and b"\n" not in value),
)


@st.composite
def encoded(draw: st.DrawFn, value: Any) -> bytes:
    """``value`` as a UTF-8 JSON body, written any way a server might write it."""
    ensure_ascii = draw(st.booleans())
    indent = draw(st.sampled_from([None, 0, 2, "\t"]))
    try:
        text = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate can only travel escaped
        text = json.dumps(value, ensure_ascii=True, indent=indent)
    text = draw(json_space) + text + draw(json_space)
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    return bom + text.encode("utf-8")


def is_json_object(body: bytes) -> bool:
    """The oracle: a UTF-8 body (BOM allowed) whose JSON text is an object."""
    try:
        return isinstance(json.loads(body.decode("utf-8-sig")), dict)
    except (ValueError, RecursionError):
        return False


def expected_text(body: bytes) -> str:
    """The text an error keeps: the decoded body, bad bytes replaced."""
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return body.decode("utf-8", errors="replace")


#: Byte sequences that are never valid UTF-8 (stray continuation, overlong, surrogate,
#: truncated multi-byte, out of range).
invalid_utf8 = st.sampled_from(
    [b"\xff", b"\xfe", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80"]
)


@st.composite
def not_utf8(draw: st.DrawFn) -> bytes:
    body = draw(json_objects.flatmap(encoded))
    at = draw(st.integers(0, len(body)))
    return body[:at] + draw(invalid_utf8) + body[at:]


@st.composite
def truncated_objects(draw: st.DrawFn) -> bytes:
    body = draw(json_objects.flatmap(encoded)).rstrip(b" \t\r\n")
    return body[: draw(st.integers(0, len(body) - 1))]


html_pages = st.builds(
    lambda code, text: (
        f"<!DOCTYPE html><html><head><title>{code}</title></head>"
        f"<body><h1>{code}</h1><p>{text}</p></body></html>"
    ).encode(),
    st.integers(200, 599),
    st.text(max_size=40),
)

large_bodies = st.builds(
    lambda unit, count: unit * count,
    st.sampled_from([b"x", b"<p>error</p>", b"[1,", "\u00e9\u20ac".encode(), b"\x00"]),
    st.integers(1_000, 200_000),
)

non_objects = st.one_of(
    json_values.filter(lambda value: not isinstance(value, dict)).flatmap(encoded),
    truncated_objects(),
    not_utf8(),
    html_pages,
    large_bodies,
    json_space.map(str.encode),
    st.binary(max_size=64),
    st.text(max_size=64).map(str.encode),
).filter(lambda body: not is_json_object(body))


def check_format_error(error: UnexpectedResponseFormat, body: bytes) -> None:
    message = str(error)
    text = expected_text(body)
    assert isinstance(error, ReplicateHomeError)
    assert isinstance(error, ValueError)
    assert message.startswith(PREFIX)
    assert error.text == text
    assert len(message) <= MESSAGE_BOUND
    if len(text) > EXCERPT_LIMIT:
        assert f"[{len(text) - EXCERPT_LIMIT} more characters]" in message
    plain = text[:EXCERPT_LIMIT]
    if plain.isascii() and plain.isprintable() and not set(plain) & set("'\"\\"):
        assert plain in message


# -- the pure decoder -----------------------------------------------------------------------


@given(data=st.data(), value=json_objects)
@example(data=None, value={}).via("the empty object")
def test_any_json_object_decodes_to_itself(
    data: st.DataObject | None, value: dict[str, Any]
) -> None:
    body = b"{}" if data is None else data.draw(encoded(value))
    decoded, text = decode_json_object(body)
    assert decoded == value
    assert text == body.decode("utf-8-sig")


@given(body=non_objects)
@example(body=b"")
@example(body=b"\xef\xbb\xbf")
@example(body=b"\xef\xbb\xbf\xef\xbb\xbf{}")
@example(body=b"null")
@example(body=b"[]")
@example(body=b'{"a": 1}{"b": 2}')
@example(body=b"[" * 100_000)
@example(body=b'{"a": ' + b"[" * 100_000)
@example(body=b'{"a": ' + b"1" * 5_000 + b"}")
@example(body=b"\xff\xfe{\x00}\x00")
def test_anything_else_is_unexpected_response_format(body: bytes) -> None:
    with pytest.raises(UnexpectedResponseFormat) as caught:
        decode_json_object(body)
    check_format_error(caught.value, body)


# -- the fields a call needs ----------------------------------------------------------------

CALL = HomeService(BASE).prepare("gemma-2b", None, "Hi")


def usable(value: object) -> bool:
    """The oracle for ``id`` and ``status``: a non-empty string of valid Unicode (JSON
    can carry a lone surrogate, which no URL or UTF-8 text can)."""
    if not isinstance(value, str) or not value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


prediction_objects = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values | json_strings,
        "status": json_values | st.sampled_from(["starting", "processing", "succeeded"]),
        "output": json_values,
        "error": json_values,
    },
)


# Found by this property: a lone surrogate in the id reached the poll URL and raised
# UnicodeEncodeError there (fixed in _decode.require_string).
@given(data=prediction_objects)
@example(data={"id": "\ud800"}).via("discovered failure")
def test_a_create_answer_needs_a_usable_id_and_status(data: dict[str, Any]) -> None:
    text = json.dumps(data)
    service = HomeService(BASE)
    fine = usable(data.get("id")) and ("status" not in data or usable(data["status"]))
    if not fine:
        with pytest.raises(UnexpectedResponseFormat) as caught:
            service.read_prediction(data, text, call=CALL, known_id=None)
        assert str(caught.value).startswith(PREFIX)
        assert caught.value.text == text
        return
    prediction = service.read_prediction(data, text, call=CALL, known_id=None)
    assert prediction.id == data["id"]
    assert prediction.status == data.get("status", "starting")
    assert prediction.output == data.get("output")
    assert prediction.error == data.get("error")
    poll = httpx.Request("GET", service.poll_request(prediction).url)
    assert poll.url.params["id"] == data["id"]


@given(data=prediction_objects)
def test_a_poll_answer_needs_a_usable_status_and_keeps_the_known_id(
    data: dict[str, Any],
) -> None:
    text = json.dumps(data)
    service = HomeService(BASE)
    if not usable(data.get("status")):
        with pytest.raises(UnexpectedResponseFormat) as caught:
            service.read_prediction(data, text, call=CALL, known_id="p1")
        assert str(caught.value).startswith(PREFIX)
        assert "'status'" in str(caught.value)
        return
    prediction = service.read_prediction(data, text, call=CALL, known_id="p1")
    assert prediction.id == "p1"
    assert prediction.status == data["status"]


# -- through the engine ---------------------------------------------------------------------


def answer(body: bytes, content_type: bytes | None, status: int = 200) -> httpx.Response:
    headers = [] if content_type is None else [(b"content-type", content_type)]
    return httpx.Response(status, content=body, headers=headers)


async def stream(answers: list[httpx.Response], sent: list[httpx.Request]) -> list[object]:
    """Run one text prediction over ``answers``; its chunks. Requests go to ``sent``."""
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        assert queue, "a request after the last scripted answer"
        return queue.pop(0)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    engine = Engine(
        http,
        HomeService(BASE),
        timeout=30,
        schedule=FixedSchedule(0.0001),
        retry=RetryPolicy(max_retries=0),
    )
    async with http, aclosing(stream_chunks(engine, CALL)) as chunks:
        return [chunk async for chunk in chunks]


@pytest.mark.anyio
@given(
    data=st.data(),
    extra=json_objects,
    create_type=content_types,
    poll_type=content_types,
    output=st.lists(st.text(max_size=5), max_size=4),
)
async def test_json_objects_under_any_content_type_drive_the_loop(
    data: st.DataObject,
    extra: dict[str, Any],
    create_type: bytes | None,
    poll_type: bytes | None,
    output: list[str],
) -> None:
    created = {**extra, "id": "p1", "status": "starting"}
    done = {**extra, "status": "succeeded", "output": output}
    sent: list[httpx.Request] = []
    chunks = await stream(
        [
            answer(data.draw(encoded(created)), create_type, 201),
            answer(data.draw(encoded(done)), poll_type),
        ],
        sent,
    )
    assert "".join(str(chunk) for chunk in chunks) == "".join(output)
    assert [request.method for request in sent] == ["POST", "GET"]


@pytest.mark.anyio
@given(body=non_objects, content_type=content_types, on_create=st.booleans())
async def test_a_bad_body_stops_the_loop_with_unexpected_response_format(
    body: bytes, content_type: bytes | None, on_create: bool
) -> None:
    created = answer(json.dumps({"id": "p1", "status": "starting"}).encode(), b"application/json")
    bad = answer(body, content_type)
    never = answer(json.dumps({"status": "succeeded"}).encode(), b"application/json")
    answers = [bad, never] if on_create else [created, bad, never]
    sent: list[httpx.Request] = []
    with pytest.raises(UnexpectedResponseFormat) as caught:
        await stream(answers, sent)
    check_format_error(caught.value, body)
    assert len(sent) == len(answers) - 1  # nothing after the bad answer


@pytest.mark.anyio
@given(data=st.data(), value=prediction_objects, content_type=content_types)
async def test_a_poll_answer_without_a_usable_status_is_unexpected_response_format(
    data: st.DataObject, value: dict[str, Any], content_type: bytes | None
) -> None:
    created = answer(json.dumps({"id": "p1", "status": "starting"}).encode(), None)
    if usable(value.get("status")):
        value = {**value, "status": data.draw(st.sampled_from(["", 0, None, [], {}, True]))}
    body = data.draw(encoded(value))
    sent: list[httpx.Request] = []
    with pytest.raises(UnexpectedResponseFormat, match="'status'") as caught:
        await stream([created, answer(body, content_type)], sent)
    check_format_error(caught.value, body)
    assert len(sent) == 2


@pytest.mark.anyio
@given(data=st.data(), value=prediction_objects, content_type=content_types)
@example(data=None, value={"id": "\ud800", "status": "starting"}, content_type=None).via(
    "discovered failure: UnicodeEncodeError from the poll URL"
)
async def test_a_create_answer_without_a_usable_id_is_unexpected_response_format(
    data: st.DataObject | None, value: dict[str, Any], content_type: bytes | None
) -> None:
    if usable(value.get("id")) and usable(value.get("status", "starting")):
        value = {k: v for k, v in value.items() if k != "id"}
    body = json.dumps(value).encode() if data is None else data.draw(encoded(value))
    sent: list[httpx.Request] = []
    with pytest.raises(UnexpectedResponseFormat) as caught:
        await stream([answer(body, content_type, 201)], sent)
    check_format_error(caught.value, body)
    assert len(sent) == 1  # no poll for a prediction without an id
