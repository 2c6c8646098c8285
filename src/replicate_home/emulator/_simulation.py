"""The prediction simulation behind the emulator: pure data and functions, no I/O.

A prediction is a :class:`Prediction` record created at some clock time; :func:`render`
gives its public JSON (Replicate's prediction object) as seen at any later time ``now``,
and :func:`stream_events` the server-sent events its output stream has produced by then.
Nothing here knows about HTTP routes, so both service layers (the homepage ``/api``
routes and Replicate's ``/v1`` API) sit on top of the same predictions. The models
(:mod:`._catalogue`), the scenarios (:mod:`._scenarios`) and the store that keeps
predictions (:mod:`._store`) are modules of their own.
"""

from __future__ import annotations

import base64
import hashlib
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
from ._scenarios import FileOutput, Scenario
from ._schemas import DEFAULT_VIDEO_BYTES, TEXT_KINDS, ModelKind
from ._trainings import WEIGHTS_FILE, WEIGHTS_TYPE, TrainingTarget, weights_bytes

__all__ = [
    "TERMINAL",
    "FileUrl",
    "Prediction",
    "Source",
    "Status",
    "StreamEvent",
    "file_content",
    "generate_text",
    "make_prediction_id",
    "output_share",
    "render",
    "stream_events",
]

Status = Literal["starting", "processing", "succeeded", "failed", "canceled", "aborted"]
Source = Literal["web", "api"]

#: The statuses a prediction never leaves.
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "canceled", "aborted"})

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
    webhook: str | None = None
    """The webhook URL its create gave, if any (the API shows it in the object)."""
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
    training: TrainingTarget | None = None
    """Where its result goes, if it is a training (:mod:`._trainings`)."""
    data_uris: dict[str, str] = field(default_factory=dict, repr=False)
    """The ``data:`` URIs of its output files by name, made at the first answer that
    shows them: every later answer (a poll, each page of a listing) shows the same ones,
    and making a PNG again at each took most of the emulator's time at scale."""

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


#: The longest ``data:`` URI a prediction keeps (:attr:`Prediction.data_uris`), in
#: characters: an image's (about 900 for the generated 64 x 64 PNGs) is kept, so the
#: memory it takes follows the predictions kept.
_KEPT_DATA_URI = 16_384


def _data_uri(content: bytes, content_type: str = "image/png") -> str:
    return f"data:{content_type};base64," + base64.b64encode(content).decode("ascii")


FileUrl = Callable[[str, str], str]
"""``file_url(prediction_id, name)``: the URL of an output file (``name``: ``"0.png"``)."""


def _output_files(pred: Prediction) -> list[tuple[str, str]]:
    """The names and media types of the files a succeeded ``pred`` produces."""
    kind = pred.kind
    if kind == "image":  # as many as the input asks for (num_outputs), else the scenario's
        count = int(pred.input.get("num_outputs", pred.scenario.images))
        return [(f"{index}.png", "image/png") for index in range(count)]
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
    if pred.training is not None:
        if name != WEIGHTS_FILE:
            return None
        weights = weights_bytes(pred.id, pred.training)
        return iter((weights,)), len(weights), WEIGHTS_TYPE
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
            uri = pred.data_uris.get(name)
            if uri is None:
                found = file_content(pred, name)
                assert found is not None
                uri = _data_uri(b"".join(found[0]), content_type)
                if len(uri) <= _KEPT_DATA_URI:  # a video's is made again, not kept
                    pred.data_uris[name] = uri
            files.append(uri)
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
        if pred.kind in TEXT_KINDS:
            output = _text_output(pred, now)
        else:
            logs += _progress_logs(pred, now)
    if status in TERMINAL:
        completed_at = _iso(pred.wall_created + (pred.end_time - pred.created))
        if running:
            predict_time = pred.end_time - pred.start_time
            metrics = {"predict_time": round(predict_time, 6)}
        if status == "succeeded":
            if pred.kind not in TEXT_KINDS:
                output = _file_output(pred, file_url, file_output)
            logs += "Prediction succeeded\n"
        elif status == "failed":
            error = scenario.error
            logs += f"Prediction failed: {scenario.error}\n"
        elif running:
            logs += "Prediction canceled\n"
    if pred.training is not None:
        # A training's output is its result, once it has one; its logs say what it does.
        output = None
        if status == "succeeded":
            output = pred.training.output(file_url(pred.id, WEIGHTS_FILE))
        logs = pred.training.logs(pred.model) if running else ""
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
    """The deadline, deployment and webhook of a prediction, where it has them."""
    extra: dict[str, Any] = {}
    if pred.webhook is not None:
        extra["webhook"] = pred.webhook
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
