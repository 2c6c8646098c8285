"""The official API's error answers, read for a message: the ``detail`` of a problem
JSON body, and what a 404 was about (a prediction, a training, a model, a
deployment). Pure."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from ._exceptions import excerpt

__all__ = ["not_found_message", "problem_detail"]

_PREDICTION_PATH = re.compile(r"/v1/predictions/(?P<id>[^/]+)")
_MODEL_PATH = re.compile(r"/v1/models/(?P<model>[^/]+/[^/]+)")
_TRAINING_PATH = re.compile(r"/v1/trainings/(?P<id>[^/]+)")
_DEPLOYMENT_PATH = re.compile(r"/v1/deployments/(?P<name>[^/]+/[^/]+)")


def problem_detail(text: str) -> str:
    """The ``detail`` (or ``title``) of a problem-JSON body; empty if there is none."""
    try:
        problem = json.loads(text)
    except ValueError:
        return ""
    if not isinstance(problem, dict):
        return ""
    for key in ("detail", "title"):
        value = problem.get(key)
        if isinstance(value, str) and value:
            return excerpt(value)
    return ""


def not_found_message(url: str, detail: str) -> str:
    path = urlsplit(url).path
    suffix = f" ({detail})" if detail else ""
    if match := _PREDICTION_PATH.search(path):
        return f"prediction {match['id']} not found{suffix}"
    if match := _MODEL_PATH.search(path):
        return f"model {match['model']} not found{suffix}"
    if match := _TRAINING_PATH.search(path):
        return f"training {match['id']} not found{suffix}"
    if match := _DEPLOYMENT_PATH.search(path):
        return f"deployment {match['name']} not found{suffix}"
    return f"not found{suffix}"
