"""A stateful property test: the public client against the real emulator over loopback.

A Hypothesis state machine scripts prompts (and prompts for one model) with generated
scenarios (duration, outcome, output, image count, content type, faults on creates and
polls), runs ``generate()`` and ``predict()`` calls against them, and checks each
outcome, each count of polls, and the emulator's counters, against a model of the
emulator's documented behaviour and the client's retry rules (docs/emulator.md,
docs/polling.md). Scripting again restarts a prompt's submit faults, and a fault a
create consumed stays consumed: that state carries from one call to the next.

Time is made deterministic: the emulator runs on a clock that moves one tick per request
the client sends (an httpx request hook moves it), so a prediction created at tick ``c``
with a duration of ``d`` ticks is terminal exactly from its ``d``-th poll on, however fast
or slow the machine is. The event loop (asyncio or trio) runs in a blocking portal, since
a state machine's rules are synchronous.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, aclosing
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from replicate_home import (
    ImageResponse,
    NotFoundError,
    PredictionCanceled,
    PredictionFailed,
    RateLimitError,
    ReplicateHome,
    ResponseStatusError,
    UnexpectedResponseFormat,
)
from replicate_home.emulator import Emulator, Fault, Scenario
from replicate_home.emulator._simulation import generate_text

#: What the client's default RetryPolicy allows: this many retries in a row.
MAX_RETRIES = 8
#: Models by the names callers use, and what the emulator calls them.
MODELS = {"gemma-2b": "google-deepmind/gemma-2b-it", "sd-3": "stability-ai/stable-diffusion-3"}
IMAGE_MODELS = {"sd-3"}
PROMPTS = ("alpha", "beta", "gamma")
#: Seconds one call may take before it counts as hung (it takes milliseconds).
CALL_LIMIT = 10
#: The behaviour of prompts nobody scripted.
DEFAULT = Scenario(duration=2)


class TickClock:
    """The emulator's clock: one tick per request the client sends."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def tick(self, request: httpx.Request) -> None:
        self.now += 1


# -- strategies -----------------------------------------------------------------------------

content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "text/html; charset=utf-8",
        "application/octet-stream",
        "garbage/;;",
        None,
    ]
)
#: Bodies of 2xx answers that no call can use: not JSON objects, or without id and status.
bad_bodies = st.sampled_from(
    [b"", b"<html>oops</html>", b"[]", b"null", b'{"status": 5}', b'{"output": "x"}', b"\xff"]
)
#: Retried faults; ``Retry-After: 0`` keeps the client's real backoff (0.25 s) out of it.
retried = st.builds(
    Fault,
    status=st.sampled_from([429, 502, 503, 504]),
    body=st.sampled_from([b"", b'{"detail": "busy"}']),
    content_type=content_types,
    retry_after=st.sampled_from([0, "0", 0.0]),
)
refused = st.builds(
    Fault,
    status=st.sampled_from([400, 401, 404, 409, 422, 500, 501]),
    body=st.sampled_from([b"", b'{"detail": "no"}', b"<html>" + b"e" * 300 + b"</html>"]),
    content_type=content_types,
)
garbled = st.builds(
    Fault, status=st.sampled_from([200, 201, 202]), body=bad_bodies, content_type=content_types
) | st.just(Fault(204, b"", None))
poll_faults = st.one_of(
    st.just(()),
    st.lists(st.none() | retried, max_size=5),
    st.lists(st.none() | retried | refused | garbled, max_size=4),
    st.sampled_from([429, 503]).map(lambda code: (Fault(code, retry_after=0),) * (MAX_RETRIES + 1)),
)
submit_faults = st.one_of(
    st.just(()),
    st.lists(retried, max_size=3),
    st.lists(retried | refused | garbled, max_size=3),
)
text_overrides = st.none() | st.text(max_size=12) | st.lists(st.text(max_size=4), max_size=6)
image_overrides = st.one_of(
    st.none(),
    st.text("abcxyz019-_", min_size=1, max_size=8).map(lambda name: f"https://cdn.test/{name}.png"),
    st.lists(st.sampled_from(["https://cdn.test/a.png", "https://cdn.test/b.png"]), max_size=3),
)


@st.composite
def scenarios(draw: st.DrawFn, model: str | None) -> Scenario:
    """A scenario for one model's predictions, or (``None``) for any model's."""
    duration = draw(st.integers(0, 5))
    start_delay = draw(st.none() | st.integers(0, duration))
    if model is None:
        output = draw(text_overrides | image_overrides)
    else:
        output = draw(image_overrides if model in IMAGE_MODELS else text_overrides)
    return Scenario(
        duration=duration,
        start_delay=start_delay,
        outcome=draw(st.sampled_from(["succeeded", "succeeded", "failed", "canceled"])),
        error=draw(st.sampled_from(["Emulated failure", "CUDA out of memory", "NSFW ✋"])),
        output=output,
        images=draw(st.integers(0, 3)),
        content_type=draw(content_types),
        submit_faults=draw(submit_faults),
        poll_faults=draw(poll_faults),
    )


# -- the model of what must happen ----------------------------------------------------------


@dataclass(frozen=True)
class Raised:
    kind: type[Exception]
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """What one call must do: its requests, and how it ends."""

    submit_faults_used: int = 0
    created: bool = False
    polls: int = 0  # poll requests
    answered: int = 0  # polls that got a prediction back (a Prediction's ``polls``)
    raised: Raised | None = None
    outcome: str | None = None  # the terminal status, when a poll saw one


def fault_error(fault: Fault) -> tuple[Raised, bool]:
    """The error a fault answer stands for, and whether a poll would retry it."""
    text = fault.body_bytes.decode("utf-8", errors="replace")
    if 200 <= fault.status < 300:
        return Raised(UnexpectedResponseFormat), False
    if fault.status == 429:
        return Raised(RateLimitError, {"status_code": 429, "retry_after": 0.0, "body": text}), True
    attributes = {"status_code": fault.status, "body": text}
    kind = NotFoundError if fault.status == 404 else ResponseStatusError
    return Raised(kind, attributes), fault.status in (502, 503, 504)


def plan_call(scenario: Scenario, faults_left: Iterator[Fault]) -> Plan:
    """Walk a call through the emulator's answers, by the client's documented rules."""
    plan = Plan()
    for attempt, fault in enumerate(faults_left):  # creates answered by submit faults
        plan.submit_faults_used += 1
        if fault.status != 429 or attempt >= MAX_RETRIES:  # a create is retried on 429 only
            plan.raised = fault_error(fault)[0]
            return plan
    plan.created = True
    retries = 0
    while True:
        plan.polls += 1
        fault = scenario.poll_fault(plan.polls - 1)
        if fault is not None:
            raised, retryable = fault_error(fault)
            if not retryable or retries >= MAX_RETRIES:
                plan.raised = raised
                return plan
            retries += 1
            continue
        retries = 0
        plan.answered += 1
        if plan.polls >= scenario.duration:  # the poll's clock is ``created + polls``
            plan.outcome = scenario.outcome
            return plan


def final_text(scenario: Scenario, model: str, prompt: str) -> str:
    override = scenario.output
    if override is None:
        return "".join(generate_text(model, prompt))
    return override if isinstance(override, str) else "".join(override)


def image_output(scenario: Scenario, base_url: str, prediction_id: str) -> str | list[str]:
    """A succeeded image prediction's output: the override, else the URLs it serves."""
    override = scenario.output
    if isinstance(override, str):
        return override
    if override is not None:
        return list(override)
    return [f"{base_url}/_emulator/files/{prediction_id}/{n}.png" for n in range(scenario.images)]


def is_image_file(url: str) -> bool:
    """What makes any model's output an image (docs/api.md): here, where every URL drawn
    is ``https://cdn.test/<name>.png``, only a data URI would be another."""
    return url.startswith("data:image/") or (
        url.startswith("https://") and url.lower().endswith(".png")
    )


def image_urls_of(output: str | list[str]) -> list[str] | None:
    """The documented image contract: one URL, or a non-empty list of URLs."""
    if isinstance(output, str):
        return [output] if output else None
    return list(output) if output and all(output) else None


# -- the machine ----------------------------------------------------------------------------


@dataclass
class Outcome:
    yielded: list[object] = field(default_factory=list)
    result: Any = None
    raised: Exception | None = None


class ClientAgainstEmulator(RuleBasedStateMachine):
    """One emulator, served for one run of the machine, and the calls made against it."""

    def __init__(self, portal: BlockingPortal) -> None:
        super().__init__()
        self.portal = portal
        self.clock = TickClock()
        self.emulator = Emulator(DEFAULT, clock=self.clock)
        self.serving: AbstractContextManager[Emulator] = portal.wrap_async_context_manager(
            self.emulator.serve()
        )
        self.base_url = self.serving.__enter__().base_url
        self.http = httpx.AsyncClient(event_hooks={"request": [self.clock.tick]}, timeout=10)
        # The model of the emulator's state:
        self.scripts: dict[tuple[str, str | None], Scenario] = {}
        self.faults_used: dict[tuple[str, str | None], int] = {}
        self.creates = 0
        self.polls = 0

    def teardown(self) -> None:
        self.portal.call(self.http.aclose)
        self.serving.__exit__(None, None, None)

    # -- rules ------------------------------------------------------------------------

    @initialize()
    def nothing_happened_yet(self) -> None:
        stats = self.emulator.stats()
        assert (stats.creates, stats.polls, stats.requests) == (0, 0, 0)

    @initialize(data=st.data(), prompts=st.lists(st.sampled_from(PROMPTS), max_size=2))
    def script_some_prompts(self, data: st.DataObject, prompts: list[str]) -> None:
        for prompt in prompts:
            self.script(data, prompt, None)

    @rule(data=st.data(), prompt=st.sampled_from(PROMPTS), model=st.sampled_from([None, *MODELS]))
    def script(self, data: st.DataObject, prompt: str, model: str | None) -> None:
        """Script a prompt (for every model, or for one): its submit faults restart."""
        scenario = data.draw(scenarios(model), label=f"scenario for {prompt}")
        key = (prompt, None if model is None else MODELS[model])
        self.emulator.script(prompt, scenario, model=key[1])
        self.scripts[key] = scenario
        self.faults_used[key] = 0

    @rule(
        prompt=st.sampled_from(PROMPTS),
        model=st.sampled_from(list(MODELS)),
        streaming=st.booleans(),
    )
    def call(self, prompt: str, model: str, streaming: bool) -> None:
        """Run generate() or predict() and hold it to the plan."""
        full = MODELS[model]
        key = next((k for k in ((prompt, full), (prompt, None)) if k in self.scripts), None)
        scenario = DEFAULT if key is None else self.scripts[key]
        used = 0 if key is None else self.faults_used[key]
        plan = plan_call(scenario, iter(scenario.submit_faults[used:]))
        image = model in IMAGE_MODELS

        ticks = self.clock.now
        outcome = self.portal.call(self.run_call, model, prompt, streaming)
        kind = type(outcome.raised).__name__ if outcome.raised else "ok"
        event(f"{'generate' if streaming else 'predict'} {model}: {kind}")

        if key is not None:
            self.faults_used[key] = used + plan.submit_faults_used
        self.creates += plan.created
        self.polls += plan.polls
        creates_sent = plan.submit_faults_used + (1 if plan.created else 0)
        # Exactly the requests the plan allows: none after a terminal status or an error.
        assert self.clock.now - ticks == creates_sent + plan.polls
        prediction_id = self.created_id() if plan.created else None
        if prediction_id is not None:
            assert self.emulator.polls(prediction_id) == plan.polls

        expected = plan.raised
        if expected is None and plan.outcome == "failed":
            expected = Raised(PredictionFailed, {"error": scenario.error})
        elif expected is None and plan.outcome == "canceled":
            expected = Raised(PredictionCanceled, {"status": "canceled"})
        elif expected is None and image and streaming:
            assert prediction_id is not None
            output = image_output(scenario, self.base_url, prediction_id)
            if image_urls_of(output) is None:  # succeeded without images: not a result
                expected = Raised(UnexpectedResponseFormat)
        check_raised(outcome.raised, expected)
        if isinstance(outcome.raised, (PredictionFailed, PredictionCanceled)):
            assert outcome.raised.prediction_id == prediction_id
        if isinstance(outcome.raised, PredictionFailed) and not image and streaming:
            # What was streamed is the start of what the prediction wrote before failing.
            failed = outcome.raised.prediction
            assert failed is not None
            assert (failed.text or "").startswith("".join(map(str, outcome.yielded)))
        if expected is not None:
            return

        assert prediction_id is not None
        if image:
            output = image_output(scenario, self.base_url, prediction_id)
            if streaming:  # one ImageResponse with every URL
                assert outcome.yielded == [ImageResponse(image_urls_of(output) or [], prompt)]
            else:
                assert outcome.result.status == "succeeded"
                assert outcome.result.output == output
            return
        text = final_text(scenario, full, prompt)
        if streaming and outcome.yielded and isinstance(outcome.yielded[-1], ImageResponse):
            # A text model whose output is image files, none of it yielded as text yet.
            output = scenario.output
            assert isinstance(output, (str, tuple))
            urls = [output] if isinstance(output, str) else list(output)
            assert all(map(is_image_file, urls))
            assert outcome.yielded == [ImageResponse(urls, prompt)]
        elif streaming:  # the chunks add up to the final output, exactly
            assert all(isinstance(chunk, str) and chunk for chunk in outcome.yielded)
            assert "".join(map(str, outcome.yielded)) == text
        else:
            assert outcome.result.status == "succeeded"
            assert outcome.result.text == text
            assert outcome.result.polls == plan.answered

    async def run_call(self, model: str, prompt: str, streaming: bool) -> Outcome:
        outcome = Outcome()
        client = ReplicateHome(self.base_url, poll_interval=0.001, http_client=self.http)
        async with client:
            try:
                with anyio.fail_after(CALL_LIMIT):  # a hung call fails here, not at 60 s
                    if streaming:
                        async with aclosing(client.generate(model, prompt=prompt)) as chunks:
                            async for chunk in chunks:
                                outcome.yielded.append(chunk)
                    else:
                        outcome.result = await client.predict(model, prompt=prompt)
            except Exception as error:  # compared with the plan's
                outcome.raised = error
        return outcome

    def created_id(self) -> str:
        creates = [r for r in self.emulator.requests if r.method == "POST" and r.status_code == 201]
        prediction_id = creates[-1].prediction_id
        assert prediction_id is not None
        return prediction_id

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def counters_agree_with_the_model(self) -> None:
        stats = self.emulator.stats()
        assert stats.creates == self.creates
        assert stats.polls == self.polls
        assert stats.requests == self.clock.now  # every request came from the client
        assert stats.in_flight <= stats.creates


def check_raised(raised: Exception | None, expected: Raised | None) -> None:
    if expected is None:
        assert raised is None, f"unexpected {raised!r}"
        return
    assert type(raised) is expected.kind, f"expected {expected.kind.__name__}, got {raised!r}"
    for name, value in expected.attributes.items():
        assert getattr(raised, name) == value, name


def machine_settings() -> settings:
    """A quarter of the profile's examples: each one serves an emulator and runs calls."""
    return settings(
        max_examples=max(4, math.ceil(settings.default.max_examples / 4)),
        stateful_step_count=8,
        suppress_health_check=[HealthCheck.too_slow],
    )


@pytest.mark.slow
def test_the_client_against_the_emulator(anyio_backend: str) -> None:
    with start_blocking_portal(anyio_backend) as portal:
        factory = functools.partial(ClientAgainstEmulator, portal)
        run_state_machine_as_test(factory, settings=machine_settings())
