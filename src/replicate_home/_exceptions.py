"""Every exception the library raises, in one hierarchy.

``ReplicateHomeError`` is the base. Errors that mean "your input was wrong" are also
``ValueError``; the deadline is also a ``TimeoutError``; so code written against the
original provider (which raised ``ValueError`` and ``Exception``) keeps working.

This module imports nothing else of the package: every layer raises these, the lowest
(reading bounded bodies, downloading files) included. So the errors that carry the
prediction's last state (:class:`PredictionFailed`, :class:`PredictionCanceled`) hold a
:class:`~replicate_home.Prediction` typed ``Any`` rather than import its module, which
sits above the downloads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AllPredictionsFailed",
    "AuthenticationError",
    "ClientNotOpenError",
    "ConnectionFailed",
    "DownloadFailed",
    "FileTooLarge",
    "InvalidInputError",
    "ModelNotSupportedError",
    "NotFoundError",
    "OutputRewritten",
    "PredictionCanceled",
    "PredictionFailed",
    "PredictionNotSent",
    "PredictionTimeout",
    "RateLimitError",
    "ReplicateHomeError",
    "ResponseStatusError",
    "ResponseTooLarge",
    "RunBoundElsewhere",
    "RunNotFound",
    "UnexpectedResponseFormat",
    "UploadFailed",
    "WebhookVerificationError",
]

#: How much of a response body an error message shows; the whole body stays on the error.
EXCERPT_LIMIT = 200


def excerpt(text: str, limit: int = EXCERPT_LIMIT) -> str:
    """Return ``text`` cut to ``limit`` characters, marking the cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


class ReplicateHomeError(Exception):
    """Base class of every error raised by replicate-home."""


class ModelNotSupportedError(ReplicateHomeError, ValueError):
    """The model name is neither a supported model nor an alias of one (the homepage
    service runs a few models only). For a model named ``owner/name`` the message says
    that Replicate's API runs any model (``ReplicateAPI``)."""

    def __init__(self, model: object, supported: Sequence[str]) -> None:
        self.model = model
        self.supported = tuple(supported)
        message = f"Model {model!r} is not supported; choose one of: {', '.join(self.supported)}"
        if isinstance(model, str) and "/" in model.strip("/"):
            message += (
                f" ({model} runs on Replicate's API, which runs any public model: "
                "use ReplicateAPI, with an API token)"
            )
        super().__init__(message)


class UnexpectedResponseFormat(ReplicateHomeError, ValueError):
    """A response body is not the JSON object the call needs.

    ``str(error)`` starts with ``Unexpected response format: `` and shows a bounded excerpt
    of the body; ``text`` keeps all of it, ``reason`` says what was wrong.
    """

    def __init__(self, text: str, reason: str = "") -> None:
        self.text = text
        self.reason = reason
        suffix = f" ({reason})" if reason else ""
        super().__init__(f"Unexpected response format: {excerpt(text)!r}{suffix}")


class ResponseTooLarge(ReplicateHomeError):
    """A response was larger than the client reads: ``limit`` bytes (decoded), the
    client's ``max_response_bytes``.

    Raised as soon as the limit is crossed, so what was read is never more than the
    limit (for a compressed body, its decoded size counts). ``what`` says which response
    (a create, a poll, an event stream), ``url`` where it came from.
    """

    def __init__(self, what: str, limit: int, url: str = "") -> None:
        self.what = what
        self.limit = limit
        self.url = url
        where = f" from {url}" if url else ""
        super().__init__(
            f"{what}{where} is larger than {limit} bytes, the client's limit: raise it "
            "with max_response_bytes= (ReplicateAPI(...) or ReplicateHome(...))"
        )


class ResponseStatusError(ReplicateHomeError):
    """The service answered with a non-2xx HTTP status."""

    def __init__(self, status_code: int, body: str, url: str, message: str | None = None) -> None:
        self.status_code = status_code
        self.body = body
        self.url = url
        detail = message or excerpt(body.strip()) or "(empty body)"
        super().__init__(f"HTTP {status_code} from {url}: {detail}")


class AuthenticationError(ReplicateHomeError):
    """No API token was configured, or the service refused it (401 or 403).

    The token itself never appears in the message, nor anywhere else.
    """

    def __init__(self, message: str, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


class InvalidInputError(ResponseStatusError, ValueError):
    """The service rejected the prediction's input (422); ``detail`` says why."""

    def __init__(self, status_code: int, body: str, url: str, detail: str) -> None:
        self.detail = detail
        super().__init__(status_code, body, url, message=f"invalid input: {detail}")


class NotFoundError(ResponseStatusError):
    """The service answered 404: no such prediction, training, file, model or
    deployment (or none this token may see). ``str(error)`` names what was asked for
    (``prediction zzz not found``)."""


class RateLimitError(ResponseStatusError):
    """The service answered 429 Too Many Requests.

    ``retry_after`` is the delay the service asked for, in seconds, when it said one.
    """

    def __init__(
        self, status_code: int, body: str, url: str, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(status_code, body, url)


class ConnectionFailed(ReplicateHomeError):
    """The service could not be reached (connection refused, reset, or read timed out).

    The original ``httpx`` exception is chained as ``__cause__``.
    """


class DownloadFailed(ReplicateHomeError):
    """An output file could not be read: an HTTP error, a broken connection, fewer
    bytes than promised, or more than the reader's limit. ``url`` is the file's URL as
    shown (no query string; a ``data:`` URI cut short); ``transient`` says whether
    trying again may help (it was tried again already)."""

    def __init__(self, url: str, reason: str, *, transient: bool = False) -> None:
        self.url = url
        self.reason = reason
        self.transient = transient
        super().__init__(f"downloading {url} failed: {reason}")


class FileTooLarge(ReplicateHomeError, ValueError):
    """File inputs too large to send inside the create request as ``data:`` URIs:
    ``size`` bytes (one call's files together, or as much as was read of one) against
    ``limit``. Raised before any request; upload them instead (``file_encoding="upload"``,
    the Files API)."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"file inputs of {size} bytes or more are too large to send as data: URIs "
            f"(at most {limit} bytes a call): send them with file_encoding='upload', "
            "through the Files API"
        )


class UploadFailed(ReplicateHomeError):
    """A file input could not be uploaded to the Files API, so the call created no
    prediction (sending it again is safe). ``name`` is the file's name, ``error`` what
    the upload raised (an HTTP status, a broken connection; also ``__cause__``)."""

    def __init__(self, name: str, error: ReplicateHomeError) -> None:
        self.name = name
        self.error = error
        super().__init__(f"uploading file input {name!r} failed, no prediction created: {error}")


class PredictionFailed(ReplicateHomeError):
    """The prediction ended with status ``failed``.

    ``error`` is the service's error; ``prediction`` the last state seen (a
    :class:`~replicate_home.Prediction`, with the partial output).
    """

    def __init__(
        self, error: object, prediction_id: str | None = None, prediction: Any = None
    ) -> None:
        self.error = error
        self.prediction_id = prediction_id
        self.prediction = prediction
        super().__init__(f"Prediction failed: {error}")


class PredictionCanceled(ReplicateHomeError):
    """The prediction was canceled (or aborted) on the service's side; ``prediction`` is
    the last state seen (a :class:`~replicate_home.Prediction`)."""

    def __init__(
        self,
        prediction_id: str | None = None,
        status: str = "canceled",
        prediction: Any = None,
    ) -> None:
        self.prediction_id = prediction_id
        self.status = status
        self.prediction = prediction
        super().__init__(f"Prediction {status}" + (f": {prediction_id}" if prediction_id else ""))


class PredictionTimeout(ReplicateHomeError, TimeoutError):
    """The prediction did not finish within the call's ``timeout``."""

    def __init__(self, prediction_id: str | None = None, timeout: float | None = None) -> None:
        self.prediction_id = prediction_id
        self.timeout = timeout
        super().__init__("Prediction timed out")


class PredictionNotSent(ReplicateHomeError):
    """The prediction was never created: the client's rate budget had no create to spare
    before the call's deadline (``timeout`` seconds from the call).

    Nothing was sent, so nothing runs or is billed, and sending it again is safe. Distinct
    from :class:`PredictionTimeout` on purpose (and not a ``TimeoutError``): a prediction's
    own timeout only starts when its create is sent.
    """

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout
        waited = "" if timeout is None else f" within {timeout:g} s"
        super().__init__(f"Prediction not sent: the rate budget had no create to spare{waited}")


class OutputRewritten(ReplicateHomeError):
    """While streaming, the service replaced output that had already been yielded.

    The chunks already delivered can't be taken back, so the stream stops instead of
    yielding text that would not add up to the final output. ``predict()`` never raises
    this: it returns the final output as the service reports it.
    """

    def __init__(self, prediction_id: str | None = None) -> None:
        self.prediction_id = prediction_id
        super().__init__("The service rewrote output that had already been streamed")


class AllPredictionsFailed(ReplicateHomeError):
    """No prediction of a ``race`` succeeded. ``errors`` holds ``(model, error)`` pairs,
    in the order the models were given."""

    def __init__(self, errors: Sequence[tuple[str, Exception]]) -> None:
        self.errors = list(errors)
        summary = "; ".join(f"{model}: {error}" for model, error in self.errors)
        super().__init__(f"No prediction succeeded ({summary})")


class ClientNotOpenError(ReplicateHomeError, RuntimeError):
    """A client method was called outside ``async with client:``, or a client that is
    already open was opened again."""


class WebhookVerificationError(ReplicateHomeError, ValueError):
    """A webhook delivery failed verification: a header missing or malformed, a
    timestamp outside the tolerance, or no signature that matches the secret. The
    delivery must not be trusted."""


class RunBoundElsewhere(ReplicateHomeError, ValueError):
    """A recorded comparison run was resumed on another service than the one it was
    recorded on: another kind (``home``/``api``), another base URL, or an emulator in
    place of a real service (or the reverse). Raised before anything is sent: its cells
    still running are on the recorded service, and output from another must not be
    mixed into the run. ``run_id`` names the run; ``service``, ``origin`` and
    ``emulator`` are what it was recorded on (``origin`` ``None`` for an emulator)."""

    def __init__(
        self, run_id: str, *, service: str, origin: str | None, emulator: bool, given: str
    ) -> None:
        self.run_id = run_id
        self.service = service
        self.origin = origin
        self.emulator = emulator
        self.given = given
        recorded = (
            f"the {service} service of an emulator"
            if emulator
            else f"the {service} service at {origin}"
        )
        super().__init__(f"run {run_id!r} was recorded on {recorded}, not on {given}")


class RunNotFound(ReplicateHomeError, KeyError):
    """No comparison run of that name in the results store (``resume_comparison``,
    ``write_report``, ``ResultsStore.run``). Also a ``KeyError``, which the store raised
    before this class existed. ``run_id`` is the name asked for."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(run_id)

    def __str__(self) -> str:  # KeyError's own is the bare repr of its key
        return f"no run named {self.run_id!r}"
