"""The seam between the shared core and a concrete Replicate service.

A service says how to build its requests and how to read its responses, and nothing
else: waiting, retrying, deadlines, streaming and cancellation live in the engine and are
written once for every service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._catalog import ModelKind
from ._exceptions import ReplicateHomeError
from ._models import Deployment, Prediction
from ._prompt import Messages
from ._uploads import FileEncoding, FileGroup

__all__ = ["PredictionCall", "RequestSpec", "Send", "Service"]


@dataclass(frozen=True)
class RequestSpec:
    """One HTTP request, described without sending it."""

    method: str
    url: str
    json: Any = None
    #: A ``multipart/form-data`` body instead of JSON: httpx's ``files`` (file objects
    #: are read in pieces as the request is sent) and ``data`` (plain fields).
    files: Mapping[str, Any] | None = field(default=None, repr=False)
    data: Mapping[str, str] | None = field(default=None, repr=False)
    #: ``False`` for a request whose success has no body to read (a delete's 204).
    expect_body: bool = True
    #: Read the answer as text rather than as a JSON object (a README in Markdown, the
    #: hardware list's JSON array): the exchange returns ``({}, text)``.
    text_body: bool = False
    # Headers may carry a token: never shown in a repr.
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: Send it with no credential at all: no ``Authorization`` or ``Cookie`` header, even
    #: one the HTTP client adds by default, and no auth flow. For a capability URL on
    #: another origin (a prediction's stream host), which must never see the API token.
    anonymous: bool = False


@dataclass(frozen=True)
class PredictionCall:
    """What one call asks for, validated and resolved before any request is sent.

    ``owned``: the call owns its prediction, so the engine cancels it on the service
    when the caller abandons it (``predict``, ``generate``, fan-outs); a prediction
    created for the caller (``create()``) is theirs, and is left running. ``existing``
    follows a prediction that already runs (a :class:`Prediction`, or its id: the first
    request reads it) instead of creating one.
    """

    model: str
    version: str | None
    input: Mapping[str, Any]
    kind: ModelKind
    prompt: str | None
    #: A deployment (``owner/name``) to create the prediction on, instead of the model.
    deployment: str | None = None
    webhook: str | None = None
    webhook_events_filter: tuple[str, ...] | None = None
    #: Seconds after which the service cancels the prediction; ``None``: the call's
    #: deadline for an owned call, no limit for one created for the caller.
    cancel_after: float | None = None
    owned: bool = True
    existing: Prediction | str | None = None
    #: How the call's file inputs are sent (``"upload"`` or ``"data"``); ``None``: as
    #: the client sends them.
    file_encoding: FileEncoding | None = None
    #: The file inputs this call shares with the other calls of its fan-out (each is
    #: sent once); ``None``: its own.
    files: FileGroup | None = field(default=None, compare=False, repr=False)
    #: Awaited right before the create is sent (after the rate budget let it out): a
    #: caller that must know a create may have left records that first (a results
    #: store's "sending" mark). If it raises, nothing is sent.
    before_create: Callable[[], Awaitable[None]] | None = field(default=None, compare=False)
    #: The latest moment (``anyio.current_time()``) its create may leave; ``None``: the
    #: call's ``timeout`` after it starts. A fan-out that starts its calls in turn gives
    #: each the deadline it had started with the first.
    send_by: float | None = field(default=None, compare=False)
    #: A training of ``model`` at ``version`` rather than a prediction: created, read
    #: and cancelled at the service's trainings endpoints, followed by the same loop.
    #: Never in a listing of predictions, so never followed in bulk.
    training: bool = False
    #: The model (``owner/name``) a training creates a version of.
    destination: str | None = None


#: Sends one request through the engine (the call's deadline, the rate budget, the
#: request gate, retries) and returns the decoded JSON object and its text.
Send = Callable[[RequestSpec], Awaitable[tuple[dict[str, Any], str]]]


class Service(Protocol):
    """How to talk to one Replicate service."""

    #: Short name used in logs and the CLI ("home", "api").
    name: str
    #: Whether the service can cancel a prediction (then the client cancels what its
    #: callers abandon, and runs creates where a caller's cancellation can't lose them).
    can_cancel: bool

    @property
    def secrets(self) -> tuple[str, ...]:
        """Credentials the service sends (the API token): scrubbed from every answer
        before anything is made of it, so no error, log record or prediction shows them."""
        ...

    def prepare(
        self,
        model: str | Deployment | None,
        messages: Messages | None,
        prompt: str | None,
        input: Mapping[str, Any] | None = None,
    ) -> PredictionCall:
        """Validate a call's arguments; raise ``ValueError`` subclasses for bad input."""
        ...

    async def resolve(self, call: PredictionCall, send: Send) -> PredictionCall:
        """Asynchronous work a call needs before its create (looking a model up, sending
        its files), done with ``send`` under the call's deadline. Most calls need none
        and come back as they are."""
        ...

    async def retry_create(
        self, call: PredictionCall, error: ReplicateHomeError, send: Send
    ) -> PredictionCall | None:
        """After the service refused a create with ``error``, the call to create instead
        (a community model at its latest version, once the model route refused it), or
        ``None``: the error stands. Done with ``send`` under the call's deadline."""
        ...

    def settled(self, call: PredictionCall, created: bool) -> None:
        """The create of a call :meth:`resolve` let through is over: ``created``, or
        refused (after :meth:`retry_create`), failed or cancelled. Calls :meth:`resolve`
        holds back until then go on."""
        ...

    def create_request(
        self, call: PredictionCall, *, remaining: float, wait: float | None
    ) -> RequestSpec:
        """The request that starts a prediction. ``remaining`` is the call's time left;
        ``wait`` asks the service to hold the answer that long for the result."""
        ...

    def stream_request(self, prediction: Prediction) -> RequestSpec | None:
        """The request for the prediction's event stream, or ``None`` without one."""
        ...

    def poll_request(self, prediction: Prediction) -> RequestSpec:
        """The request that reads a prediction's current state."""
        ...

    def cancel_request(self, prediction: Prediction) -> RequestSpec | None:
        """The request that cancels a prediction, or ``None`` if the service has none."""
        ...

    def read_prediction(
        self, data: dict[str, Any], text: str, *, call: PredictionCall, known_id: str | None
    ) -> Prediction:
        """Read a create (``known_id`` is ``None``) or poll answer; raise
        :class:`UnexpectedResponseFormat` when a field the call needs is missing."""
        ...

    def error_for(
        self, status_code: int, text: str, url: str, retry_after: float | None
    ) -> ReplicateHomeError:
        """The exception for a non-2xx answer."""
        ...
