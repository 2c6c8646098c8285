"""The prediction simulation behind the emulator: pure data and functions, no I/O.

A prediction is a :class:`Prediction` record created at some clock time; :func:`render`
gives its public JSON (Replicate's prediction object) as seen at any later time ``now``,
and :func:`stream_events` the server-sent events its output stream has produced by then.
Nothing here knows about HTTP routes, so both service layers (the homepage ``/api``
routes and Replicate's ``/v1`` API) sit on top of the same predictions.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, NamedTuple

from ._file_models import (
    FileDigest,
    image_to_image_png,
    transcription_output,
    upscale_png,
    video_chunks,
)
from ._png import gradient_png
from ._schemas import DEFAULT_VIDEO_BYTES, ModelKind

__all__ = [
    "COMMUNITY_MODELS",
    "EXTRA_IMAGE_MODELS",
    "FILE_MODELS",
    "MODELS",
    "TERMINAL",
    "Fault",
    "ModelInfo",
    "Prediction",
    "PredictionStore",
    "Scenario",
    "StreamEvent",
    "file_content",
    "generate_text",
    "make_prediction_id",
    "model_info",
    "output_share",
    "render",
    "stream_events",
    "version_for",
]

Outcome = Literal["succeeded", "failed", "canceled"]
Status = Literal["starting", "processing", "succeeded", "failed", "canceled", "aborted"]
FileOutput = Literal["url", "data"]
Source = Literal["web", "api"]

#: The statuses a prediction never leaves.
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "canceled", "aborted"})


class ModelInfo(NamedTuple):
    """What the emulator knows about one model: its pinned version, what it produces, and
    whether it is an official model (run by name on ``POST /v1/models/.../predictions``)
    or a community model (run by version only)."""

    version: str
    kind: ModelKind
    official: bool = True


#: The homepage models, name -> (version, kind). The single source of truth of the emulator.
MODELS: Mapping[str, ModelInfo] = {
    "google-deepmind/gemma-2b-it": ModelInfo(
        "dff94eaf770e1fc211e425a50b51baa8e4cac6c39ef074681f9e39d778773626", "text"
    ),
    "stability-ai/stable-diffusion-3": ModelInfo(
        "527d2a6296facb8e47ba1eaf17f142c240c19a30894f437feee9b91cc29d8e4f", "image"
    ),
    "bytedance/sdxl-lightning-4step": ModelInfo(
        "5f24084160c9089501c1b3545d9be3c27883ae2239b6f412990e82d4a6210f8f", "image"
    ),
    "playgroundai/playground-v2.5-1024px-aesthetic": ModelInfo(
        "a45f82a1382bed5c7aeb861dac7c7d191b0fdf74d8d57c4a0e6ed7d4d0bf7d24", "image"
    ),
}

#: Models that produce images besides the homepage's; every other model name produces text.
EXTRA_IMAGE_MODELS: frozenset[str] = frozenset(
    {"stability-ai/sdxl", "black-forest-labs/flux-schnell", "nvidia/sana", "fofr/sdxl-emoji"}
)

#: Models that take or give files, name -> kind (see :mod:`._schemas` for their inputs).
FILE_MODELS: Mapping[str, ModelKind] = {
    "replicate/upscaler": "upscale",
    "replicate/img2img": "image-to-image",
    "openai/whisper": "speech-to-text",
    "minimax/video-01": "video",
}

#: Community models: the real API runs them by version only (its model route answers 404
#: for them). Every other model name is official (runs by name), so that any name works
#: on the model route as it always has.
COMMUNITY_MODELS: frozenset[str] = frozenset(
    {
        "bytedance/sdxl-lightning-4step",
        "playgroundai/playground-v2.5-1024px-aesthetic",
        "nvidia/sana",
        "fofr/sdxl-emoji",
        "lucataco/phi-3-mini-4k-instruct",
    }
)


def version_for(model: str) -> str:
    """The version id the emulator gives ``model`` (``owner/name``): its pinned one for the
    homepage models, else the hex SHA-256 of the name, so it is the same in every run."""
    known = MODELS.get(model)
    return known.version if known is not None else hashlib.sha256(model.encode()).hexdigest()


def model_info(model: str) -> ModelInfo:
    """What the emulator makes of any ``owner/name``: its version and what it produces."""
    official = model not in COMMUNITY_MODELS
    known = MODELS.get(model)
    if known is not None:
        return known._replace(official=official)
    kind: ModelKind = FILE_MODELS.get(model) or ("image" if model in EXTRA_IMAGE_MODELS else "text")
    return ModelInfo(version_for(model), kind, official)


_OUTCOMES: tuple[Outcome, ...] = ("succeeded", "failed", "canceled")
_FILE_OUTPUTS: tuple[FileOutput, ...] = ("url", "data")


# --------------------------------------------------------------------------- validation


def _number(owner: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{owner}.{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{owner}.{name} must be finite, got {value!r}")
    return float(value)


def _header_value(owner: str, name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"{owner}.{name} must not contain line breaks, got {value!r}")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{owner}.{name} must be encodable as Latin-1, got {value!r}") from None


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Fault:
    """One scripted bad answer instead of the normal response."""

    status: int = 503
    """HTTP status code of the answer (200..599; 1xx cannot be a final answer)."""
    body: bytes | str = b""
    """Response body; a ``str`` is sent UTF-8 encoded."""
    content_type: str | None = "text/plain; charset=utf-8"
    """``Content-Type`` header sent verbatim; ``None`` sends no ``Content-Type`` at all."""
    retry_after: float | str | None = None
    """``Retry-After`` header: a number is sent as ``str(number)``, a ``str`` verbatim."""

    def __post_init__(self) -> None:
        if isinstance(self.status, bool) or not isinstance(self.status, int):
            raise ValueError(f"Fault.status must be an int, got {self.status!r}")
        if not 100 <= self.status <= 599:
            raise ValueError(f"Fault.status must be between 100 and 599, got {self.status}")
        if self.status < 200:
            raise ValueError(
                f"Fault.status {self.status} is informational (1xx), which HTTP/1.1 cannot "
                "send as a final answer; use a status between 200 and 599"
            )
        if not isinstance(self.body, (bytes, str)):
            raise ValueError(f"Fault.body must be bytes or str, got {type(self.body).__name__}")
        if self.body and self.status in (204, 304):
            raise ValueError(f"Fault.body must be empty for status {self.status}")
        if self.content_type is not None:
            if not isinstance(self.content_type, str):
                raise ValueError(
                    f"Fault.content_type must be a str or None, got {self.content_type!r}"
                )
            _header_value("Fault", "content_type", self.content_type)
        if isinstance(self.retry_after, str):
            _header_value("Fault", "retry_after", self.retry_after)
        elif self.retry_after is not None and _number("Fault", "retry_after", self.retry_after) < 0:
            raise ValueError(f"Fault.retry_after must not be negative, got {self.retry_after}")

    @property
    def body_bytes(self) -> bytes:
        """The body as sent on the wire."""
        return self.body.encode() if isinstance(self.body, str) else self.body

    @property
    def headers(self) -> dict[str, str]:
        """The headers this fault answers with (besides ``Content-Length``)."""
        headers: dict[str, str] = {}
        if self.content_type is not None:
            headers["content-type"] = self.content_type
        if self.retry_after is not None:
            headers["retry-after"] = str(self.retry_after)
        return headers


@dataclass(frozen=True)
class Scenario:
    """How predictions with a given prompt behave."""

    duration: float = 1.0
    """Seconds from create to terminal status."""
    start_delay: float | None = None
    """Seconds in ``starting`` before ``processing``; ``None`` means 10% of ``duration``."""
    outcome: Outcome = "succeeded"
    """The terminal status."""
    error: str = "Emulated failure"
    """The ``error`` field when ``outcome == "failed"``."""
    output: str | Sequence[str] | None = None
    """Overrides the generated output: a ``str`` is a single-string output (growing as a
    prefix while processing, for text models), a sequence a list of chunks. For image
    models it replaces the list of image URLs."""
    images: int = 1
    """Number of image URLs an image model produces."""
    content_type: str | None = "application/json"
    """``Content-Type`` of normal poll answers (``None``: no header), to act out servers
    that send JSON under a wrong content type."""
    submit_faults: Sequence[Fault] = ()
    """The first ``len(submit_faults)`` creates with this prompt get these answers in turn
    and create nothing."""
    poll_faults: Sequence[Fault | None] = ()
    """The k-th poll (0-based) of a prediction gets ``poll_faults[k]`` unless it is ``None``;
    polls beyond the sequence get normal answers."""
    file_output: FileOutput | None = None
    """How image outputs are given: ``"url"``, URLs of PNG files the emulator serves, or
    ``"data"``, ``data:image/png;base64,...`` URIs carrying the files themselves;
    ``None``: as the emulator's ``file_output`` says for ``/v1`` predictions, URLs on the
    homepage routes."""
    quirks: bool = False
    """Answer ``/v1`` prediction objects the way the real API sometimes does: ``logs: null``
    before any log, extra unknown fields, richer ``metrics`` objects and a duplicated key in
    the JSON text (with the same value)."""

    def __post_init__(self) -> None:
        duration = _number("Scenario", "duration", self.duration)
        if duration < 0:
            raise ValueError(f"Scenario.duration must not be negative, got {self.duration}")
        if self.start_delay is not None:
            start_delay = _number("Scenario", "start_delay", self.start_delay)
            if start_delay < 0:
                raise ValueError(
                    f"Scenario.start_delay must not be negative, got {self.start_delay}"
                )
            if start_delay > duration:
                raise ValueError(
                    f"Scenario.start_delay ({self.start_delay}) must not exceed "
                    f"Scenario.duration ({self.duration})"
                )
        if self.outcome not in _OUTCOMES:
            raise ValueError(
                f"Scenario.outcome must be one of {', '.join(_OUTCOMES)}, got {self.outcome!r}"
            )
        if not isinstance(self.error, str):
            raise ValueError(f"Scenario.error must be a str, got {self.error!r}")
        if self.output is not None and not isinstance(self.output, str):
            chunks = tuple(self.output)
            for chunk in chunks:
                if not isinstance(chunk, str):
                    raise ValueError(f"Scenario.output items must be str, got {chunk!r}")
            object.__setattr__(self, "output", chunks)
        if isinstance(self.images, bool) or not isinstance(self.images, int) or self.images < 0:
            raise ValueError(f"Scenario.images must be a non-negative int, got {self.images!r}")
        if self.content_type is not None:
            if not isinstance(self.content_type, str):
                raise ValueError(
                    f"Scenario.content_type must be a str or None, got {self.content_type!r}"
                )
            _header_value("Scenario", "content_type", self.content_type)
        submit_faults = tuple(self.submit_faults)
        for fault in submit_faults:
            if not isinstance(fault, Fault):
                raise ValueError(f"Scenario.submit_faults items must be Fault, got {fault!r}")
        object.__setattr__(self, "submit_faults", submit_faults)
        poll_faults = tuple(self.poll_faults)
        for maybe_fault in poll_faults:
            if maybe_fault is not None and not isinstance(maybe_fault, Fault):
                raise ValueError(
                    f"Scenario.poll_faults items must be Fault or None, got {maybe_fault!r}"
                )
        object.__setattr__(self, "poll_faults", poll_faults)
        if self.file_output is not None and self.file_output not in _FILE_OUTPUTS:
            raise ValueError(
                f"Scenario.file_output must be one of {', '.join(_FILE_OUTPUTS)}, "
                f"got {self.file_output!r}"
            )
        if not isinstance(self.quirks, bool):
            raise ValueError(f"Scenario.quirks must be a bool, got {self.quirks!r}")

    @property
    def effective_start_delay(self) -> float:
        """``start_delay``, or 10% of ``duration`` when it is ``None``."""
        return 0.1 * self.duration if self.start_delay is None else float(self.start_delay)

    def poll_fault(self, poll_number: int) -> Fault | None:
        """The scripted fault for the ``poll_number``-th poll (0-based), if any."""
        if 0 <= poll_number < len(self.poll_faults):
            return self.poll_faults[poll_number]
        return None


# --------------------------------------------------------------------------- deterministic text

_WORDS = (
    "the", "quiet", "river", "carries", "light", "across", "a", "valley", "of", "stone",
    "and", "every", "morning", "brings", "new", "colour", "to", "old", "hills", "where",
    "small", "birds", "gather", "near", "warm", "water", "while", "clouds", "drift", "over",
    "green", "fields", "under", "open", "sky", "with", "gentle", "wind", "that", "moves",
    "through", "tall", "grass", "beside", "winding", "paths", "leading", "home", "in",
    "soft", "evening", "glow", "as", "lanterns", "shine", "on", "distant", "shores",
    "bright", "stars", "appear", "above", "calm", "seas",
)  # fmt: skip


def _byte_stream(seed: str) -> Iterator[int]:
    counter = 0
    while True:
        yield from hashlib.sha256(f"{counter}\x00{seed}".encode()).digest()
        counter += 1


def generate_text(model: str, prompt: str) -> tuple[str, ...]:
    """The deterministic text a text model "writes" for ``prompt``, as 20 to 40 chunks.

    Each chunk is one word, with a leading space except the first; their concatenation
    is a few plain sentences.
    """
    stream = _byte_stream(f"text\x00{model}\x00{prompt}")
    count = 20 + next(stream) % 21
    chunks: list[str] = []
    left_in_sentence = 0
    for index in range(count):
        word = _WORDS[next(stream) % len(_WORDS)]
        if left_in_sentence == 0:
            word = word.capitalize()
            left_in_sentence = 6 + next(stream) % 7
        left_in_sentence -= 1
        if left_in_sentence == 0 or index == count - 1:
            word += "."
            left_in_sentence = 0
        chunks.append(word if index == 0 else " " + word)
    return tuple(chunks)


def make_prediction_id(entropy: bytes) -> str:
    """A Replicate-style prediction id (26 lowercase base32 characters) from 16+ bytes."""
    if len(entropy) < 16:
        raise ValueError("a prediction id needs at least 16 bytes of entropy")
    return base64.b32encode(entropy[:16]).decode("ascii")[:26].lower()


# --------------------------------------------------------------------------- predictions


@dataclass(eq=False)
class Prediction:
    """One simulated prediction. Times are on the emulator clock except ``wall_created``."""

    id: str
    model: str
    version: str
    kind: ModelKind
    input: Mapping[str, Any]
    prompt: str
    scenario: Scenario
    created: float
    """Emulator-clock time of creation."""
    wall_created: float
    """Unix time of creation, for the ISO-8601 timestamps."""
    chunks: tuple[str, ...] = ()
    """Generated text chunks (text models without an output override)."""
    source: Source = "web"
    """Where it was created: ``"web"`` (the homepage routes) or ``"api"`` (``/v1``)."""
    deadline: float | None = None
    """Emulator-clock time a ``Cancel-After`` deadline stops it, if any."""
    canceled_at: float | None = None
    """Emulator-clock time a cancel request stopped it, if any."""
    deployment: str | None = None
    """The deployment (``owner/name``) it was created on, if any."""
    polls: int = field(default=0)
    """Polls seen so far."""
    number: int = field(default=0)
    """Creation order within its store (set by :meth:`PredictionStore.add`)."""
    stream_key: str = ""
    """The unguessable last part of its output stream's URL (a capability: whoever has
    the URL may read the stream, with no token); empty for no stream."""
    files: Mapping[str, FileDigest] = field(default_factory=dict)
    """The digests of its input files by input path (``"image"``, ``"reference_images.0"``),
    resolved when it was created."""

    @property
    def start_time(self) -> float:
        """Emulator-clock time the prediction leaves ``starting`` (if it is not stopped first)."""
        return self.created + self.scenario.effective_start_delay

    @property
    def natural_end(self) -> float:
        """Emulator-clock time the scenario's outcome is reached, unless stopped earlier."""
        return self.created + self.scenario.duration

    @property
    def end_time(self) -> float:
        """Emulator-clock time the prediction reaches its terminal status."""
        end = self.natural_end
        for stop in (self.deadline, self.canceled_at):
            if stop is not None and stop < end:
                end = stop
        return end

    @property
    def final_status(self) -> Status:
        """The terminal status it reaches at :attr:`end_time`."""
        if self.canceled_at is not None and self.canceled_at < self.natural_end:
            return "canceled"
        if self.deadline is not None and self.deadline < self.natural_end:
            # A deadline reached before the prediction started aborts it instead.
            return "aborted" if self.deadline < self.start_time else "canceled"
        return self.scenario.outcome

    @property
    def started(self) -> bool:
        """Whether it leaves ``starting`` before it ends (it may be stopped before)."""
        return self.start_time <= self.end_time

    def status(self, now: float) -> Status:
        """The status at ``now``."""
        if now >= self.end_time:
            return self.final_status
        if now >= self.start_time:
            return "processing"
        return "starting"

    def is_terminal(self, now: float) -> bool:
        """Whether the status at ``now`` is terminal."""
        return now >= self.end_time


def _iso(unix_time: float) -> str:
    moment = datetime.fromtimestamp(unix_time, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# A text output is a sequence of pieces: the generated chunks, the scenario's chunks, or the
# characters of a single-string output. Piece k of the ``total`` produced appears at
# start + (natural_end - start) * (k + 1) / total; a failed or canceled outcome only ever
# produces half of them, and a stopped prediction none after it stopped. Outputs and stream
# events are both counted from these times, so they always agree.


def _pieces(pred: Prediction) -> Sequence[str]:
    override = pred.scenario.output
    if isinstance(override, str):
        return override
    return pred.chunks if override is None else tuple(override)


def _piece_total(pred: Prediction) -> int:
    share = 1.0 if pred.scenario.outcome == "succeeded" else 0.5
    return math.floor(len(_pieces(pred)) * share)


def _piece_time(pred: Prediction, index: int, total: int) -> float:
    start = pred.start_time
    return start + (pred.natural_end - start) * (index + 1) / total


def _produced(pred: Prediction, now: float) -> int:
    """How many output pieces exist at ``now``."""
    total = _piece_total(pred)
    moment = min(now, pred.end_time)
    if total == 0 or moment < pred.start_time:
        return 0
    span = pred.natural_end - pred.start_time
    count = (
        total
        if span <= 0
        else min(total, max(0, math.floor(total * (moment - pred.start_time) / span)))
    )
    # The estimate can be one off through rounding; settle it on the exact piece times.
    while count < total and _piece_time(pred, count, total) <= moment:
        count += 1
    while count > 0 and _piece_time(pred, count - 1, total) > moment:
        count -= 1
    return count


def output_share(pred: Prediction, now: float) -> float:
    """How much of its text output ``pred`` has produced by ``now``, from 0 to 1."""
    total = _piece_total(pred)
    return 1.0 if total == 0 else _produced(pred, now) / total


def _text_output(pred: Prediction, now: float) -> str | list[str]:
    pieces = _pieces(pred)
    count = _produced(pred, now)
    if isinstance(pieces, str):
        return pieces[:count]
    return list(pieces[:count])


def _data_uri(content: bytes, content_type: str = "image/png") -> str:
    return f"data:{content_type};base64," + base64.b64encode(content).decode("ascii")


FileUrl = Callable[[str, str], str]
"""``file_url(prediction_id, name)``: the URL of an output file (``name``: ``"0.png"``)."""


def _output_files(pred: Prediction) -> list[tuple[str, str]]:
    """The names and media types of the files a succeeded ``pred`` produces."""
    kind = pred.kind
    if kind == "image":
        return [(f"{index}.png", "image/png") for index in range(pred.scenario.images)]
    if kind == "upscale":
        return [("0.png", "image/png")]
    if kind == "image-to-image":
        count = int(pred.input.get("num_outputs", 1))
        return [(f"{index}.png", "image/png") for index in range(count)]
    if kind == "video":
        return [("0.mp4", "video/mp4")]
    return []


def _video_size(pred: Prediction) -> int:
    return int(pred.input.get("output_bytes", DEFAULT_VIDEO_BYTES))


def file_content(pred: Prediction, name: str) -> tuple[Iterator[bytes], int, str] | None:
    """Output file ``name`` of ``pred`` (as its output names it): its bytes in pieces, its
    length and its media type; ``None`` if ``pred`` has no such file (the caller checks
    that it succeeded)."""
    if pred.scenario.output is not None:
        return None  # a scripted output names files of its own
    content_type = dict(_output_files(pred)).get(name)
    if content_type is None:
        return None
    if pred.kind == "video":
        size = _video_size(pred)
        return (
            video_chunks(pred.prompt, size, pred.files.get("first_frame_image")),
            size,
            content_type,
        )
    index = int(name.split(".", 1)[0])
    content = _file_bytes(pred, index)
    return iter((content,)), len(content), content_type


def _file_bytes(pred: Prediction, index: int) -> bytes:
    if pred.kind == "upscale":
        return upscale_png(pred.files["image"], int(pred.input.get("scale", 2)))
    if pred.kind == "image-to-image":
        references = [
            pred.files[path]
            for path in sorted(pred.files, key=_path_order)
            if path.startswith("reference_images.")
        ]
        return image_to_image_png(
            pred.files["image"],
            pred.prompt,
            float(pred.input.get("strength", 0.8)),
            index,
            references,
        )
    return gradient_png(pred.prompt, index)


def _path_order(path: str) -> tuple[str, int]:
    name, _, index = path.partition(".")
    return name, int(index) if index.isdigit() else -1


def _file_output(pred: Prediction, file_url: FileUrl, file_output: FileOutput) -> Any:
    """The output of a succeeded prediction of a model that is not a text model."""
    override = pred.scenario.output
    if isinstance(override, str):
        return override
    if override is not None:
        return list(override)
    if pred.kind == "speech-to-text":
        return transcription_output(
            pred.files["audio"],
            str(pred.input.get("transcription", "plain text")),
            bool(pred.input.get("translate")),
        )
    as_data = (pred.scenario.file_output or file_output) == "data"
    files: list[str] = []
    for name, content_type in _output_files(pred):
        if as_data:
            found = file_content(pred, name)
            assert found is not None
            files.append(_data_uri(b"".join(found[0]), content_type))
        else:
            files.append(file_url(pred.id, name))
    # Models with one output file give it alone (a string), as such models do on Replicate.
    return files[0] if pred.kind in ("upscale", "video") else files


#: Denoising steps an image model reports in its logs (tqdm-style lines).
IMAGE_STEPS = 20


def _progress_logs(pred: Prediction, now: float) -> str:
    """An image model's tqdm-style progress lines so far: ``" 45%|████▌     | 9/20"``."""
    span = pred.natural_end - pred.start_time
    moment = min(now, pred.end_time)
    fraction = 1.0 if span <= 0 else max(0.0, min(1.0, (moment - pred.start_time) / span))
    reached = math.floor(IMAGE_STEPS * fraction)
    lines = []
    for step in range(reached + 1):
        percent = 100 * step // IMAGE_STEPS
        bar = "█" * (percent // 10) + " " * (10 - percent // 10)
        lines.append(f"{percent:3d}%|{bar}| {step}/{IMAGE_STEPS}\n")
    return "".join(lines)


def render(
    pred: Prediction,
    now: float,
    *,
    file_url: FileUrl,
    as_created: bool = False,
    file_output: FileOutput = "url",
) -> dict[str, Any]:
    """The public prediction object of ``pred`` at emulator-clock time ``now``.

    ``file_url(prediction_id, name)`` builds the URL of an output file;
    ``file_output`` is how output files are given when the scenario does not say.
    ``as_created`` renders the object as answered to the create request: ``starting``
    with nothing produced yet, whatever the scenario's timing.
    """
    scenario = pred.scenario
    status: Status = "starting" if as_created else pred.status(now)
    output: Any = None
    error: str | None = None
    logs = ""
    started_at: str | None = None
    completed_at: str | None = None
    metrics: dict[str, float] = {}
    running = status == "processing" or (status in TERMINAL and pred.started)
    if running:
        started_at = _iso(pred.wall_created + scenario.effective_start_delay)
        logs = f"Starting prediction with {pred.model}\n"
        if pred.kind == "text":
            output = _text_output(pred, now)
        else:
            logs += _progress_logs(pred, now)
    if status in TERMINAL:
        completed_at = _iso(pred.wall_created + (pred.end_time - pred.created))
        if running:
            predict_time = pred.end_time - pred.start_time
            metrics = {"predict_time": round(predict_time, 6)}
        if status == "succeeded":
            if pred.kind != "text":
                output = _file_output(pred, file_url, file_output)
            logs += "Prediction succeeded\n"
        elif status == "failed":
            error = scenario.error
            logs += f"Prediction failed: {scenario.error}\n"
        elif running:
            logs += "Prediction canceled\n"
    return {
        "id": pred.id,
        "model": pred.model,
        "version": pred.version,
        "input": dict(pred.input),
        "logs": logs,
        "output": output,
        "error": error,
        "status": status,
        "created_at": _iso(pred.wall_created),
        "started_at": started_at,
        "completed_at": completed_at,
        "metrics": metrics,
        **_extra_fields(pred),
    }


def _extra_fields(pred: Prediction) -> dict[str, Any]:
    """The deadline and deployment of a prediction, where it has them."""
    extra: dict[str, Any] = {}
    if pred.deadline is not None:
        extra["deadline"] = _iso(pred.wall_created + (pred.deadline - pred.created))
    if pred.deployment is not None:
        extra["deployment"] = pred.deployment
    return extra


# --------------------------------------------------------------------------- output streams


class StreamEvent(NamedTuple):
    """One server-sent event of a prediction's output stream."""

    id: int
    """Its position in the stream, from 0."""
    event: Literal["output", "error", "done"]
    data: str


def stream_events(pred: Prediction, now: float) -> tuple[list[StreamEvent], float | None]:
    """The events of ``pred``'s output stream produced by ``now``, and when the next one is due.

    An ``output`` event per new piece of text, then, once the prediction is terminal, an
    ``error`` event (data ``{"detail": ...}``) if it failed and a ``done`` event whose data is
    ``{}`` on success, ``{"reason": "canceled"}`` or ``{"reason": "error"}``. The next time is
    ``None`` once ``done`` is produced. Events already produced never change, whatever
    happens later (a cancel only drops the events still to come).
    """
    pieces = _pieces(pred)
    count = _produced(pred, now)
    events = [StreamEvent(index, "output", pieces[index]) for index in range(count)]
    if pred.is_terminal(now):
        status = pred.status(now)
        if status == "failed":
            detail = json.dumps({"detail": pred.scenario.error}, ensure_ascii=False)
            events.append(StreamEvent(len(events), "error", detail))
            done = {"reason": "error"}
        elif status == "succeeded":
            done = {}
        else:
            done = {"reason": "canceled"}
        events.append(StreamEvent(len(events), "done", json.dumps(done)))
        return events, None
    total = _piece_total(pred)
    due = pred.end_time
    if count < total:
        due = min(due, _piece_time(pred, count, total))
    return events, due


# --------------------------------------------------------------------------- the store


class PredictionStore:
    """The predictions of one emulator, with lazy, bounded retention.

    Finished predictions expire ``expire_after`` seconds after completion; at most
    ``max_predictions`` are kept (the earliest finished go first, then the oldest).
    Call :meth:`purge` with the current time before looking things up.
    """

    def __init__(self, *, expire_after: float, max_predictions: int) -> None:
        if _number("Emulator", "expire_after", expire_after) < 0:
            raise ValueError(f"expire_after must not be negative, got {expire_after}")
        if isinstance(max_predictions, bool) or not isinstance(max_predictions, int):
            raise ValueError(f"max_predictions must be an int, got {max_predictions!r}")
        if max_predictions < 1:
            raise ValueError(f"max_predictions must be at least 1, got {max_predictions}")
        self.expire_after = float(expire_after)
        self.max_predictions = max_predictions
        self._predictions: dict[str, Prediction] = {}  # in creation order
        self._by_stream_key: dict[str, str] = {}  # stream key -> id
        self._by_end: list[tuple[float, int, str]] = []  # (end_time, seq, id) heap
        self._running: list[tuple[float, str]] = []  # (end_time, id) heap, may hold stale entries
        self._running_end: dict[str, float] = {}  # id -> end time, for predictions still running
        self._seq = 0

    def __len__(self) -> int:
        return len(self._predictions)

    def add(self, pred: Prediction, now: float) -> None:
        """Store a new prediction (created at ``now``), dropping old ones beyond the limit."""
        if pred.id in self._predictions:
            raise ValueError(f"duplicate prediction id {pred.id!r}")
        self._predictions[pred.id] = pred
        if pred.stream_key:
            self._by_stream_key[pred.stream_key] = pred.id
        self._seq += 1
        pred.number = self._seq
        self._schedule(pred, now)
        self.purge(now)

    def _schedule(self, pred: Prediction, now: float) -> None:
        end = pred.end_time
        self._seq += 1
        heapq.heappush(self._by_end, (end, self._seq, pred.id))
        self._running_end.pop(pred.id, None)
        if end > now:
            heapq.heappush(self._running, (end, pred.id))
            self._running_end[pred.id] = end

    def cancel(self, pred: Prediction, now: float) -> bool:
        """Cancel ``pred`` at ``now`` unless it is terminal then; whether it was canceled."""
        if pred.is_terminal(now):
            return False
        pred.canceled_at = now
        self._schedule(pred, now)
        return True

    def get(self, prediction_id: str, now: float) -> Prediction | None:
        """The prediction with that id, unless unknown or expired at ``now``."""
        pred = self._predictions.get(prediction_id)
        if pred is None or pred.end_time + self.expire_after <= now:
            return None
        return pred

    def peek(self, prediction_id: str) -> Prediction | None:
        """The stored prediction with that id, without any expiry check."""
        return self._predictions.get(prediction_id)

    def newest_first(self) -> Iterator[Prediction]:
        """The stored predictions, the most recently created first (call :meth:`purge` first)."""
        return reversed(self._predictions.values())

    def purge(self, now: float) -> None:
        """Drop expired predictions, then the earliest finished ones beyond the limit."""
        heap = self._by_end
        while heap:
            end, _, prediction_id = heap[0]
            pred = self._predictions.get(prediction_id)
            if pred is None or pred.end_time != end:  # dropped or rescheduled: stale entry
                heapq.heappop(heap)
                continue
            finished = end <= now
            expired = end + self.expire_after <= now
            if not (expired or (finished and len(self._predictions) > self.max_predictions)):
                break
            heapq.heappop(heap)
            self._drop(prediction_id)
        while len(self._predictions) > self.max_predictions:  # all remaining are running
            self._drop(next(iter(self._predictions)))

    def _drop(self, prediction_id: str) -> None:
        pred = self._predictions.pop(prediction_id)
        self._by_stream_key.pop(pred.stream_key, None)

    def by_stream_key(self, key: str, now: float) -> Prediction | None:
        """The prediction whose output stream ``key`` names, unless unknown or expired."""
        prediction_id = self._by_stream_key.get(key)
        return None if prediction_id is None else self.get(prediction_id, now)

    def in_flight(self, now: float) -> int:
        """How many predictions have a terminal time after ``now``."""
        running = self._running
        while running and running[0][0] <= now:
            end, prediction_id = heapq.heappop(running)
            if self._running_end.get(prediction_id) == end:
                del self._running_end[prediction_id]
        return len(self._running_end)
