"""Run Replicate predictions from trio and asyncio programs alike.

``ReplicateAPI`` runs them on Replicate's official API (a token, streaming, remote
cancel, a shared rate budget).
``ReplicateHome`` keeps the original provider's surface (class attributes, models,
aliases, versions, ``create_async_generator``) on an anyio + httpx core with deadlines,
prompt cancellation and an adaptive poll schedule. ``replicate_home.emulator`` is a
faithful loopback server of the service for tests and demos.
"""

from ._api_records import (
    Account,
    Collection,
    Hardware,
    Model,
    ModelVersion,
    SearchHit,
    SearchPage,
    SearchResults,
)
from ._budget import RateBudget, TokenBucket
from ._downloads import FileOutput
from ._entry import fan_out
from ._exceptions import (
    AllPredictionsFailed,
    AuthenticationError,
    ClientNotOpenError,
    ConnectionFailed,
    DownloadFailed,
    FileTooLarge,
    InvalidInputError,
    ModelNotSupportedError,
    NotFoundError,
    OutputRewritten,
    PredictionCanceled,
    PredictionFailed,
    PredictionNotSent,
    PredictionTimeout,
    RateLimitError,
    ReplicateHomeError,
    ResponseStatusError,
    ResponseTooLarge,
    RunBoundElsewhere,
    RunNotFound,
    UnexpectedResponseFormat,
    UploadFailed,
    WebhookVerificationError,
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
from ._models import Deployment, DeploymentRelease, ImageResponse, Prediction, PredictionProgress
from ._prompt import Message, Messages, format_prompt
from ._provider import ReplicateHome
from ._replicate_api import ReplicateAPI
from ._schedule import AdaptiveSchedule, FixedSchedule, PollSchedule
from ._trainings import Training
from ._uploads import UploadedFile
from ._version import __version__

__all__ = [
    "Account",
    "AdaptiveSchedule",
    "AllPredictionsFailed",
    "AuthenticationError",
    "Chunk",
    "ClientNotOpenError",
    "Collection",
    "ComparisonResult",
    "ConnectionFailed",
    "Deployment",
    "DeploymentRelease",
    "DownloadFailed",
    "Event",
    "Failed",
    "FanOut",
    "FileOutput",
    "FileTooLarge",
    "Finished",
    "FixedSchedule",
    "Hardware",
    "Image",
    "ImageResponse",
    "InvalidInputError",
    "Message",
    "Messages",
    "Model",
    "ModelNotSupportedError",
    "ModelVersion",
    "NotFoundError",
    "OutputRewritten",
    "PollSchedule",
    "Prediction",
    "PredictionCanceled",
    "PredictionFailed",
    "PredictionNotSent",
    "PredictionProgress",
    "PredictionTimeout",
    "Progress",
    "RateBudget",
    "RateLimitError",
    "ReplicateAPI",
    "ReplicateHome",
    "ReplicateHomeError",
    "ResponseStatusError",
    "ResponseTooLarge",
    "RunBoundElsewhere",
    "RunNotFound",
    "SearchHit",
    "SearchPage",
    "SearchResults",
    "StatusChanged",
    "TokenBucket",
    "Training",
    "UnexpectedResponseFormat",
    "UploadFailed",
    "UploadedFile",
    "WebhookVerificationError",
    "__version__",
    "fan_out",
    "format_prompt",
]
