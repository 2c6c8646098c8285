"""Property tests of the poll loop as a state machine.

The real :class:`Engine`, with ``stream_chunks`` (what ``generate()`` runs) and
``run_to_end`` (what ``predict()`` runs) on top, is driven through generated server
behaviour over an in-process httpx transport: status sequences, growing and rewritten
outputs, image outputs, content types, transient failures with and without
``Retry-After``, transport errors and bad bodies at any step. An oracle written from the
documented rules (docs/polling.md, the TextStream contract) says what must come out and
how many requests may be sent, and how long each wait must at least be; every generated
run is checked against it, on asyncio and on trio. A last property runs predictions that
never end into small deadlines: ``PredictionTimeout``, on time, with no more requests
than the poll interval and the retries allow.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from replicate_home import (
    ConnectionFailed,
    ImageResponse,
    NotFoundError,
    OutputRewritten,
    Prediction,
    PredictionCanceled,
    PredictionFailed,
    PredictionTimeout,
    RateLimitError,
    ResponseStatusError,
    UnexpectedResponseFormat,
)
from replicate_home._engine import Engine
from replicate_home._home import HomeService
from replicate_home._run import run_to_end, stream_chunks
from replicate_home._schedule import FixedSchedule, RetryPolicy

pytestmark = pytest.mark.anyio

BASE = "http://service.test"
PROMPT = "Hi"
#: Seconds between polls, and the floor of retry waits: tiny, but real timers.
INTERVAL = 0.0005
#: A deadline the outcome tests never reach.
GENEROUS = 30.0
#: Clock slack for lower bounds on waits (timers never fire early by more than this).
EPSILON = 1e-6

TEXT_MODELS = ["gemma-2b"]
IMAGE_MODELS = ["sd-3", "sdxl", "playground-v2.5"]
TERMINAL = ("succeeded", "failed", "canceled", "aborted")

# -- what the server may answer -------------------------------------------------------------


@dataclass(frozen=True)
class Normal:
    """A 2xx answer with a prediction object in it."""

    status: str | None  # None: no "status" field (a create may leave it out)
    output: Any = None
    error: Any = None
    id: str | None = "p1"  # None: no "id" field (a poll answer may leave it out)
    code: int = 200
    content_type: bytes | None = b"application/json"
    bom: bool = False

    def response(self) -> httpx.Response:
        body: dict[str, Any] = {"output": self.output, "error": self.error}
        if self.id is not None:
            body["id"] = self.id
        if self.status is not None:
            body["status"] = self.status
        raw = (b"\xef\xbb\xbf" if self.bom else b"") + json.dumps(body).encode()
        return respond(self.code, raw, self.content_type)


@dataclass(frozen=True)
class Broken:
    """A 2xx answer whose body is not the JSON object the call needs."""

    body: bytes
    code: int = 200
    content_type: bytes | None = b"text/html"

    def response(self) -> httpx.Response:
        return respond(self.code, self.body, self.content_type)


@dataclass(frozen=True)
class Busy:
    """429, 502, 503 or 504, maybe with a ``Retry-After``."""

    code: int
    retry_after: str | None = None
    body: bytes = b""

    def response(self) -> httpx.Response:
        headers = [] if self.retry_after is None else [(b"retry-after", self.retry_after.encode())]
        return httpx.Response(self.code, content=self.body, headers=headers)


@dataclass(frozen=True)
class Rejected:
    """Any other non-2xx status: a plain "no"."""

    code: int
    body: bytes = b""

    def response(self) -> httpx.Response:
        return respond(self.code, self.body, b"text/html")


@dataclass(frozen=True)
class Unreachable:
    """The request failed in the transport."""

    error: type[httpx.TransportError]

    def response(self) -> httpx.Response:
        raise self.error("scripted transport failure")


Answer = Normal | Broken | Busy | Rejected | Unreachable


def respond(code: int, body: bytes, content_type: bytes | None) -> httpx.Response:
    headers = [] if content_type is None else [(b"content-type", content_type)]
    return httpx.Response(code, content=body, headers=headers)


@dataclass(frozen=True)
class Script:
    """What the server answers: creates in turn, then polls in turn."""

    model: str
    creates: tuple[Answer, ...]
    polls: tuple[Answer, ...]
    policy: RetryPolicy

    @property
    def kind(self) -> str:
        return "image" if self.model in IMAGE_MODELS else "text"


# -- the oracle -----------------------------------------------------------------------------

#: ``Retry-After`` values drawn, and what they mean (``None``: ignored, back off instead).
RETRY_AFTER = {
    "0": 0.0,
    "0.001": 0.001,
    " 0.0005 ": 0.0005,
    "0.01": 0.01,  # long enough that a loop ignoring it is seen to wait less
    "1e-3": 0.001,
    "soon": None,
    "-1": None,
    "nan": None,
    "inf": None,
    "": None,
    "Wed, 21 Oct 2015 07:28:00 GMT": 0.0,  # a date in the past: at once
}

#: Transport errors that prove a create never reached the service.
UNSENT = (httpx.ConnectError, httpx.ConnectTimeout)


@dataclass(frozen=True)
class Raised:
    """An exception the run must end with: its exact class and attributes."""

    kind: type[Exception]
    attributes: dict[str, Any] = field(default_factory=dict)


class Stop(Exception):
    """The oracle's run ends with ``raised``."""

    def __init__(self, raised: Raised) -> None:
        self.raised = raised


@dataclass
class Expected:
    yielded: list[object] = field(default_factory=list)  # generate: everything yielded
    raised: Raised | None = None
    result: Normal | None = None  # predict: the terminal answer it returns
    requests: int = 0
    polls: int = 0  # answered polls (the Prediction's ``polls``)
    statuses: list[str] = field(default_factory=list)  # on_status calls
    waits: list[float] = field(default_factory=list)  # least wait before request k (k >= 1)


def decoded_text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return body.decode("utf-8", errors="replace")


def failure(answer: Answer, creating: bool) -> tuple[Raised, bool, float | None]:
    """The error an answer that is not a 2xx stands for, whether it may be retried, and
    the wait the service asked for."""
    if isinstance(answer, Unreachable):
        retryable = issubclass(answer.error, UNSENT) or not creating
        return Raised(ConnectionFailed, {"__cause__": answer.error}), retryable, None
    body = answer.body.decode("utf-8", errors="replace")
    if isinstance(answer, Busy):
        wait = RETRY_AFTER[answer.retry_after] if answer.retry_after is not None else None
        if answer.code == 429:
            attributes = {"status_code": 429, "retry_after": wait, "body": body}
            return Raised(RateLimitError, attributes), True, wait
        return (
            Raised(ResponseStatusError, {"status_code": answer.code, "body": body}),
            (not creating),
            wait,
        )
    assert isinstance(answer, Rejected)
    kind = NotFoundError if answer.code == 404 else ResponseStatusError
    return Raised(kind, {"status_code": answer.code, "body": body}), False, None


def image_urls_of(output: Any) -> list[str] | None:
    """The documented image contract: one URL, or a non-empty list of URLs."""
    if isinstance(output, str) and output:
        return [output]
    if isinstance(output, list) and output and all(isinstance(u, str) and u for u in output):
        return list(output)
    return None


#: File endings that make a URL an image file (docs/api.md: ".png, .jpg, .webp …").
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".avif")


def is_image_file(value: object) -> bool:
    """An http(s) URL whose path ends like an image file, or a ``data:image/`` URI."""
    if not isinstance(value, str):
        return False
    if value.startswith("data:image/"):
        return True
    return value.startswith(("https://", "http://")) and (
        urlsplit(value).path.lower().endswith(IMAGE_SUFFIXES)
    )


def image_files(output: Any) -> list[str] | None:
    """Any model's output that is image files: one, or a non-empty list of them."""
    if is_image_file(output):
        return [output]
    if isinstance(output, list) and output and all(map(is_image_file, output)):
        return list(output)
    return None


def text_of(output: Any) -> list[str] | None:
    """An output's text chunks: a string is one, a list of strings is many, null none."""
    if output is None:
        return []
    if isinstance(output, str):
        return [output]
    if isinstance(output, list) and all(isinstance(chunk, str) for chunk in output):
        return output
    return None


def new_pieces(chunks: list[str], delivered: str) -> list[str]:
    """The parts of ``chunks`` beyond the ``delivered`` text, split where the service split
    them (a chunk that straddles the end gives its tail), empty parts left out."""
    pieces: list[str] = []
    position = 0
    for chunk in chunks:
        end = position + len(chunk)
        if end > len(delivered):
            pieces.append(chunk[max(0, len(delivered) - position) :])
        position = end
    return [piece for piece in pieces if piece]


def expected_run(script: Script, predict: bool) -> Expected:
    """What the documented loop does with ``script``, step by step."""
    policy = script.policy
    expected = Expected()
    wait = 0.0  # the least wait before the next request

    def send(answers: Iterator[Answer], creating: bool) -> Normal | Broken:
        nonlocal wait
        attempt = 0
        while True:
            answer = next(answers)
            if expected.requests:
                expected.waits.append(wait)
            expected.requests += 1
            if isinstance(answer, (Normal, Broken)):
                return answer
            raised, retryable, asked = failure(answer, creating)
            connect = creating and isinstance(answer, Unreachable)
            limit = policy.max_connect_retries if connect else policy.max_retries
            if not retryable or attempt >= limit:
                raise Stop(raised)
            backoff = min(policy.maximum, policy.initial * policy.factor**attempt)
            wait = asked if asked is not None else backoff
            attempt += 1

    creates, polls = iter(script.creates), iter(script.polls)
    delivered = ""
    prediction_id = ""
    try:
        answer = send(creates, creating=True)
        while True:
            if isinstance(answer, Broken):
                raise Stop(Raised(UnexpectedResponseFormat, {"text": decoded_text(answer.body)}))
            if not prediction_id:  # the create's answer: it must name the prediction
                if not answer.id:
                    raise Stop(Raised(UnexpectedResponseFormat))
                prediction_id = answer.id
                status = answer.status or "starting"
            else:  # a poll's answer: the strategies give it a usable status
                assert answer.status
                status = answer.status
            if not expected.statuses or expected.statuses[-1] != status:
                expected.statuses.append(status)
            if status == "failed":
                attributes = {"error": answer.error, "prediction_id": prediction_id}
                raise Stop(Raised(PredictionFailed, attributes))
            if status in ("canceled", "aborted"):
                attributes = {"status": status, "prediction_id": prediction_id}
                raise Stop(Raised(PredictionCanceled, attributes))
            final = status == "succeeded"
            if predict:
                pass  # predict() only reports the prediction
            elif script.kind == "image":
                if final:
                    urls = image_urls_of(answer.output)
                    if urls is None:
                        raise Stop(Raised(UnexpectedResponseFormat))
                    expected.yielded.append(ImageResponse(urls, PROMPT))
            elif not delivered and (files := image_files(answer.output)) is not None:
                if final:  # image files from a text model: one ImageResponse, at the end
                    expected.yielded.append(ImageResponse(files, PROMPT))
            elif (chunks := text_of(answer.output)) is None:
                if final:  # not text: once, as JSON, at the end
                    expected.yielded.append(json.dumps(answer.output, ensure_ascii=False))
            else:
                text = "".join(chunks)
                consistent = text.startswith(delivered) or (
                    not final and delivered.startswith(text)  # a stale answer: nothing new
                )
                if not consistent:
                    raise Stop(Raised(OutputRewritten, {"prediction_id": prediction_id}))
                pieces = new_pieces(chunks, delivered)
                expected.yielded.extend(pieces)
                delivered += "".join(pieces)
            if final:
                expected.result = answer
                return expected
            wait = INTERVAL
            answer = send(polls, creating=False)
            expected.polls += 1
    except Stop as stop:
        expected.raised = stop.raised
    return expected


# -- driving the real loop ------------------------------------------------------------------


class Server:
    """Answers from a script, noting when each request came."""

    def __init__(self, script: Script) -> None:
        self.creates = list(script.creates)
        self.polls = list(script.polls)
        self.times: list[float] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.times.append(anyio.current_time())
        self.requests.append(request)
        queue = self.creates if request.method == "POST" else self.polls
        assert queue, f"a request the script has no answer for: {request.method} {request.url}"
        return queue.pop(0).response()


@dataclass
class Observed:
    yielded: list[object] = field(default_factory=list)
    raised: BaseException | None = None
    result: Prediction | None = None
    statuses: list[str] = field(default_factory=list)


async def drive(
    script: Script, server: Server, *, predict: bool, timeout: float = GENEROUS
) -> Observed:
    observed = Observed()
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    engine = Engine(
        http,
        HomeService(BASE),
        timeout=timeout,
        schedule=FixedSchedule(INTERVAL),
        retry=script.policy,
    )
    call = HomeService(BASE).prepare(script.model, None, PROMPT)

    def on_status(prediction: Prediction) -> None:
        observed.statuses.append(prediction.status)

    async with http:
        try:
            if predict:
                observed.result = await run_to_end(engine, call, on_status=on_status)
            else:
                chunks = stream_chunks(engine, call, on_status=on_status)
                async with aclosing(chunks):
                    async for chunk in chunks:
                        observed.yielded.append(chunk)
        except Exception as error:  # compared with the oracle's
            observed.raised = error
    return observed


def check_raised(raised: BaseException | None, expected: Raised | None) -> None:
    if expected is None:
        assert raised is None, f"unexpected {raised!r}"
        return
    assert type(raised) is expected.kind, f"expected {expected.kind.__name__}, got {raised!r}"
    for name, value in expected.attributes.items():
        if name == "__cause__":
            assert isinstance(raised.__cause__, value)
        else:
            assert getattr(raised, name) == value, name
    if isinstance(raised, UnexpectedResponseFormat):
        assert str(raised).startswith("Unexpected response format: ")


# -- strategies -----------------------------------------------------------------------------

small_text = st.text(max_size=4)
non_text = st.one_of(
    st.integers(),
    st.booleans(),
    st.dictionaries(small_text, st.integers() | small_text, max_size=2),
    st.lists(st.integers() | st.none(), min_size=1, max_size=3),
    st.lists(small_text, min_size=1, max_size=2).map(lambda xs: [*xs, 1]),
)
content_types = st.sampled_from(
    [
        b"application/json",
        b"application/json; charset=utf-8",
        b"text/plain",
        b"text/html; charset=utf-8",
        b"application/octet-stream",
        None,
        b"garbage/;;",
        b"\xff\xfe",
    ]
)
#: Outputs a text model may give that are image files, or nearly.
maybe_image_file = st.sampled_from(
    [
        "https://cdn.test/a.png",
        "http://cdn.test/b.JPG?size=2",
        "data:image/png;base64,iVBORw0KGgo=",
        "https://cdn.test/c.wav",
        "https://cdn.test/d.png/",
        "ftp://cdn.test/e.png",
    ]
)
maybe_image_files = maybe_image_file | st.lists(maybe_image_file, min_size=1, max_size=3)
unknown_statuses = st.one_of(
    st.sampled_from(["queued", "Succeeded", "FAILED", "pending", "cancelling", "done"]),
    st.text(min_size=1, max_size=8),
).filter(lambda status: status not in TERMINAL)
running_statuses = st.sampled_from(["starting", "processing"]) | unknown_statuses
retry_afters = st.none() | st.sampled_from(sorted(RETRY_AFTER))
busy = st.builds(
    Busy,
    st.sampled_from([429, 502, 503, 504]),
    retry_afters,
    st.sampled_from([b"", b'{"detail": "busy"}', b"<html>busy</html>"]),
)
transport_errors = st.sampled_from(
    [
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.ReadError,
        httpx.ReadTimeout,
        httpx.WriteError,
        httpx.RemoteProtocolError,
    ]
)
rejected = st.builds(
    Rejected,
    st.sampled_from([301, 304, 400, 401, 403, 404, 409, 422, 500, 501, 505]),
    st.sampled_from([b"", b"<html>" + b"e" * 500 + b"</html>", b'{"detail": "no"}']),
)
broken_bodies = st.sampled_from(
    [
        b"",
        b"   ",
        b"null",
        b"[]",
        b'"succeeded"',
        b'{"status": "succeeded"',
        b"<html><body>502 Bad Gateway</body></html>",
        b"\xff\xfe{}",
        b'{"status": 5}',
        b'{"status": ""}',
        b'{"status": null, "output": "x"}',
        b'{"output": ["a"]}',
        b'{"status": ["succeeded"]}',
    ]
)
broken = st.builds(Broken, broken_bodies, st.sampled_from([200, 201, 202, 204]), content_types)


#: The id a create answers with: mostly a good one, sometimes none or an empty one.
create_ids = st.sampled_from(["p1"] * 12 + ["p/1 ?&#", "é€", None, ""])
#: The id a poll answers with: ignored, the client keeps the one it created.
poll_ids = st.sampled_from(["p1", "other", "", None])


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Draw from one of the strategies, picked in proportion to its weight."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def normal(
    status: st.SearchStrategy[str | None],
    output: st.SearchStrategy[Any],
    ids: st.SearchStrategy[str | None] = poll_ids,
) -> st.SearchStrategy[Normal]:
    return st.builds(
        Normal,
        status=status,
        output=output,
        error=st.none() | small_text | st.just({"detail": "CUDA OOM"}),
        id=ids,
        code=st.sampled_from([200, 200, 201, 202]),
        content_type=content_types,
        bom=st.booleans(),
    )


@st.composite
def outputs(draw: st.DrawFn, kind: str) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    """Strategies for outputs while the prediction runs, and for its final output."""
    if kind == "image":
        urls = st.text(min_size=1, max_size=8)
        good = urls | st.lists(urls, min_size=1, max_size=3)
        bad = st.sampled_from([None, "", [], [""], ["x", ""], [1], {"url": "x"}])
        running = st.none() | good | bad
        return running, weighted((1, good), (1, bad))
    chunks = draw(st.lists(small_text, max_size=5))
    text = "".join(chunks)
    growing = st.one_of(
        st.integers(0, len(chunks)).map(lambda n: chunks[:n]),
        st.integers(0, len(text)).map(lambda n: text[:n]),
        st.none(),
    )
    # Text that contradicts the story somewhere (unless it happens to agree).
    rewritten = st.integers(0, len(text)).map(lambda n: text[:n] + "\N{REPLACEMENT CHARACTER}")
    other = st.one_of(
        st.lists(small_text, max_size=3), small_text, non_text, rewritten, maybe_image_files
    )
    running = weighted((4, growing), (1, other))
    final = weighted((2, st.just(chunks)), (2, st.just(text)), (1, other), (1, st.none()))
    return running, final


@st.composite
def scripts(draw: st.DrawFn) -> Script:
    model = draw(st.sampled_from(TEXT_MODELS * 6 + IMAGE_MODELS))  # two thirds text
    kind = "image" if model in IMAGE_MODELS else "text"
    running, final = draw(outputs(kind))
    policy = RetryPolicy(
        max_retries=draw(st.integers(0, 3)),
        max_connect_retries=draw(st.integers(0, 2)),
        initial=INTERVAL,
        factor=2.0,
        maximum=4 * INTERVAL,
    )
    ends = st.sampled_from(["succeeded"] * 3 + ["failed", "canceled", "aborted"])
    unreachable = st.builds(Unreachable, transport_errors)
    # Creates: maybe a few failures (retryable ones, or anything), then the answer that
    # starts the run (or ends it at once).
    may_retry = st.builds(Busy, st.just(429), retry_afters) | st.builds(
        Unreachable, st.sampled_from(UNSENT)
    )
    create_failures = weighted(
        (2, st.just([])),
        (1, st.lists(may_retry, min_size=1, max_size=3)),
        (1, st.lists(busy | unreachable | rejected, min_size=1, max_size=2)),
    )
    starting = normal(st.none() | st.just("starting"), st.none(), create_ids)
    create_answer = weighted(
        (5, starting),
        (2, normal(running_statuses, running, create_ids)),
        (1, normal(ends, final, create_ids)),
        (1, broken),
    )
    creates = [*draw(create_failures), draw(create_answer)]
    # Polls: running answers and transient failures, in half the runs one answer that
    # stops the loop, then the end, then answers that must never be asked for.
    running_answer = normal(running_statuses, running)
    step = weighted((6, running_answer), (1, busy), (1, unreachable))
    polls = draw(st.lists(step, max_size=8))
    stopper = draw(weighted((4, st.none()), (1, rejected), (1, broken)))
    if stopper is not None:
        polls.insert(draw(st.integers(0, len(polls))), stopper)
    polls += [draw(normal(ends, final)), Normal("processing", None), Normal("succeeded", None)]
    return Script(model, tuple(creates), tuple(polls), policy)


@st.composite
def clean_runs(draw: st.DrawFn) -> Script:
    """A prediction that runs to ``succeeded`` without a failure on the way: only the
    output (growing as chunks or as one string, stale, rewritten; image URLs) and the
    answers' statuses and content types vary."""
    model = draw(st.sampled_from(["gemma-2b", "gemma-2b", *IMAGE_MODELS]))
    running, final = draw(outputs("image" if model in IMAGE_MODELS else "text"))
    polls = draw(st.lists(normal(running_statuses, running), max_size=10))
    polls += [draw(normal(st.just("succeeded"), final)), Normal("processing", None)]
    first = normal(st.sampled_from([None, "starting", "processing"]), running, st.just("p1"))
    return Script(model, (draw(first),), tuple(polls), RetryPolicy(max_retries=0))


# -- the properties -------------------------------------------------------------------------


def examples(scale: float) -> settings:
    """The loaded profile's number of examples, scaled (these tests wait on real timers)."""
    return settings(max_examples=max(5, math.ceil(settings.default.max_examples * scale)))


@examples(1)
@given(script=scripts(), predict=st.booleans())
@example(
    script=Script(
        "gemma-2b",
        (Normal("starting"),),
        (
            Normal("processing", ["Once"]),
            Normal("processing", "Once up"),  # a single string growing past a chunk
            Normal("processing", ["Once"]),  # stale: nothing new
            Normal("succeeded", ["Once", " upon"]),
        ),
        RetryPolicy(max_retries=0),
    ),
    predict=False,
).via("growth across shapes")
async def test_the_loop_does_what_the_rules_say(script: Script, predict: bool) -> None:
    expected = expected_run(script, predict)
    event(f"{script.kind}: {'ok' if expected.raised is None else expected.raised.kind.__name__}")
    server = Server(script)
    observed = await drive(script, server, predict=predict)

    check_raised(observed.raised, expected.raised)
    # Exactly the requests the rules allow: nothing after a terminal status or an error.
    assert len(server.times) == expected.requests
    assert observed.statuses == expected.statuses
    # Every wait is at least what the schedule, the backoff or Retry-After asked for.
    gaps = [later - earlier for earlier, later in zip(server.times, server.times[1:], strict=False)]
    for gap, least in zip(gaps, expected.waits, strict=True):
        assert gap >= least - EPSILON
    if predict:
        if expected.result is not None:
            result = observed.result
            assert result is not None
            assert (result.status, result.output) == ("succeeded", expected.result.output)
            assert result.polls == expected.polls
        return
    assert observed.yielded == expected.yielded
    if expected.raised is None:
        assert expected.result is not None
        check_whole_output(observed.yielded, expected.result.output)


@examples(1)
@given(script=clean_runs())
@example(
    script=Script("sd-3", (Normal("starting"),), (Normal("succeeded", []),), RetryPolicy())
).via("an image prediction that succeeded without images")
@example(
    script=Script(
        "gemma-2b",
        (Normal("starting"),),
        (
            Normal("processing", ["https://cdn.test/a.png"]),
            Normal("succeeded", ["https://cdn.test/a.png", "https://cdn.test/b.png"]),
        ),
        RetryPolicy(),
    )
).via("a text model whose output is image files")
async def test_a_succeeded_run_yields_its_whole_output_or_stops(script: Script) -> None:
    expected = expected_run(script, predict=False)
    outcome = "ok" if expected.raised is None else expected.raised.kind.__name__
    event(f"{script.kind}: {outcome}")
    server = Server(script)
    observed = await drive(script, server, predict=False)

    check_raised(observed.raised, expected.raised)
    assert observed.yielded == expected.yielded
    assert len(server.times) == expected.requests
    if expected.raised is None:
        assert expected.result is not None
        check_whole_output(observed.yielded, expected.result.output)


def check_whole_output(yielded: list[object], output: Any) -> None:
    """What a succeeded generate() yielded: one ImageResponse with every URL, or text
    chunks that add up to the final output exactly (or, for output that is not text,
    the text streamed before and the output once as JSON)."""
    if yielded and isinstance(yielded[-1], ImageResponse):
        assert yielded == [ImageResponse(image_urls_of(output) or [], PROMPT)]
        return
    assert all(isinstance(chunk, str) and chunk for chunk in yielded)
    joined = "".join(map(str, yielded))
    final = text_of(output)
    if final is None:
        assert joined.endswith(json.dumps(output, ensure_ascii=False))
    else:
        assert joined == "".join(final)


@st.composite
def endless(draw: st.DrawFn) -> tuple[list[Busy], list[Answer], RetryPolicy]:
    """A prediction that never ends: 429s to its create, then the poll answers to cycle
    through, with failures no longer than the retries allow."""
    max_retries = draw(st.integers(0, 3))
    create_failures = [Busy(429, "0.001")] * draw(st.integers(0, max_retries))
    cycle: list[Answer] = []
    for _ in range(draw(st.integers(1, 4))):
        run = draw(st.lists(busy | st.builds(Unreachable, transport_errors), max_size=max_retries))
        cycle += [*run, draw(normal(running_statuses, st.none()))]
    policy = RetryPolicy(
        max_retries=max_retries, initial=INTERVAL, factor=2.0, maximum=4 * INTERVAL
    )
    return create_failures, cycle, policy


@examples(0.25)
@given(
    endless=endless(),
    timeout=st.sampled_from([0.01, 0.02, 0.04]),
    interval=st.sampled_from([0.001, 0.004, 0.01, 0.05]),
)
async def test_the_deadline_bounds_the_loop(
    endless: tuple[list[Busy], list[Answer], RetryPolicy], timeout: float, interval: float
) -> None:
    create_failures, cycle, policy = endless
    times: list[float] = []
    posts: list[float] = []
    answered: list[bool] = []  # per poll: whether it was a 2xx (ends one poll's retries)

    def server(request: httpx.Request) -> httpx.Response:
        times.append(anyio.current_time())
        if request.method == "POST":
            posts.append(times[-1])
            if len(posts) <= len(create_failures):
                return create_failures[len(posts) - 1].response()
            return Normal("starting").response()
        answer = cycle[len(answered) % len(cycle)]
        answered.append(isinstance(answer, Normal))
        return answer.response()

    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    engine = Engine(
        http, HomeService(BASE), timeout=timeout, schedule=FixedSchedule(interval), retry=policy
    )
    call = HomeService(BASE).prepare("gemma-2b", None, PROMPT)
    started = anyio.current_time()
    async with http:
        with pytest.raises(PredictionTimeout, match=r"^Prediction timed out$") as caught:
            await run_to_end(engine, call)
    ended = anyio.current_time()

    assert isinstance(caught.value, TimeoutError)
    assert caught.value.timeout == timeout
    # Not before the deadline, and promptly after it.
    assert ended - started >= timeout - EPSILON
    assert ended - started < timeout + 2.0
    # No request after the deadline (give or take the clock's grain).
    assert all(time < times[0] + timeout + 0.05 for time in times)
    # The creates the script asked for, then polls (a very slow machine may not get that far).
    if answered:
        assert len(posts) == len(create_failures) + 1
        assert caught.value.prediction_id == "p1"
    else:
        assert len(posts) <= len(create_failures) + 1
    # Each poll waits a full interval after the previous answer, and the deadline stops
    # them: no more answered polls than timeout / interval, give or take the one in flight.
    assert sum(answered) <= timeout / interval + 1
    # A poll is sent at most max_retries + 1 times: every answered poll and the one cut
    # off account for all poll requests.
    assert len(answered) <= (sum(answered) + 1) * (policy.max_retries + 1)
