"""Run Replicate predictions from trio and asyncio programs alike.

``ReplicateHome`` keeps the original provider's surface (class attributes, models,
aliases, versions, ``create_async_generator``) on an anyio + httpx core with deadlines,
prompt cancellation and an adaptive poll schedule. ``replicate_home.emulator`` is a
faithful loopback server of the service for tests and demos.
"""

from importlib.metadata import PackageNotFoundError, version

from ._entry import fan_out
from ._exceptions import (
    AllPredictionsFailed,
    ClientNotOpenError,
    ConnectionFailed,
    ModelNotSupportedError,
    OutputRewritten,
    PredictionCanceled,
    PredictionFailed,
    PredictionTimeout,
    RateLimitError,
    ReplicateHomeError,
    ResponseStatusError,
    UnexpectedResponseFormat,
)
from ._fanout import (
    Chunk,
    ComparisonResult,
    Event,
    Failed,
    FanOut,
    Finished,
    Image,
    Progress,
    StatusChanged,
)
from ._models import ImageResponse, Prediction
from ._prompt import Message, Messages, format_prompt
from ._provider import ReplicateHome
from ._schedule import AdaptiveSchedule, FixedSchedule, PollSchedule

try:
    __version__ = version("replicate-home")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "AdaptiveSchedule",
    "AllPredictionsFailed",
    "Chunk",
    "ClientNotOpenError",
    "ComparisonResult",
    "ConnectionFailed",
    "Event",
    "Failed",
    "FanOut",
    "Finished",
    "FixedSchedule",
    "Image",
    "ImageResponse",
    "Message",
    "Messages",
    "ModelNotSupportedError",
    "OutputRewritten",
    "PollSchedule",
    "Prediction",
    "PredictionCanceled",
    "PredictionFailed",
    "PredictionTimeout",
    "Progress",
    "RateLimitError",
    "ReplicateHome",
    "ReplicateHomeError",
    "ResponseStatusError",
    "StatusChanged",
    "UnexpectedResponseFormat",
    "__version__",
    "fan_out",
    "format_prompt",
]
