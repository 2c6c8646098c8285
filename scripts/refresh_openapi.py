"""Refresh the vendored copy of Replicate's OpenAPI description (needs the network).

``uv run python scripts/refresh_openapi.py [--ref main]`` downloads
``src/libs/Replicate/openapi.yaml`` from the public repository tryAGI/Replicate (a copy,
converted to OpenAPI 3.0, of the description Replicate serves at
``https://api.replicate.com/openapi.json``) at the newest commit on ``--ref`` that
changed it, and rewrites ``tests/data/openapi/replicate.yaml`` and ``source.json`` (the
commit, its date, the day of the download, the SHA-256 and the number of operations).

The tests never run this: they read the vendored copy. After a refresh, run
``uv run pytest tests/test_openapi_conformance.py`` to see what changed, and review the
diff of the description and of ``DESCRIPTION_ERRORS`` in that test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import yaml

REPOSITORY = "tryAGI/Replicate"
PATH = "src/libs/Replicate/openapi.yaml"
HERE = Path(__file__).resolve().parent.parent / "tests" / "data" / "openapi"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace", "query"}


def newest_commit(http: httpx.Client, ref: str) -> tuple[str, str]:
    """The newest commit on ``ref`` that changed the description, and its date."""
    answer = http.get(
        f"https://api.github.com/repos/{REPOSITORY}/commits",
        params={"path": PATH, "sha": ref, "per_page": "1"},
    )
    answer.raise_for_status()
    (commit,) = answer.json()
    return str(commit["sha"]), str(commit["commit"]["committer"]["date"])


def count_operations(description: dict[str, Any]) -> int:
    return sum(
        1
        for operations in description["paths"].values()
        for method in operations
        if method in METHODS
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ref", default="main", help="branch, tag or commit (default: main)")
    arguments = parser.parse_args()
    with httpx.Client(timeout=60, follow_redirects=True) as http:
        commit, committed = newest_commit(http, arguments.ref)
        answer = http.get(f"https://raw.githubusercontent.com/{REPOSITORY}/{commit}/{PATH}")
        answer.raise_for_status()
    text = answer.content
    description = yaml.safe_load(text)
    if not isinstance(description, dict) or "paths" not in description:
        print("refresh: the download is not an OpenAPI description", file=sys.stderr)
        return 1
    (HERE / "replicate.yaml").write_bytes(text)
    source = {
        "repository": REPOSITORY,
        "path": PATH,
        "commit": commit,
        "committed": committed,
        "fetched": datetime.now(timezone.utc).date().isoformat(),
        "sha256": hashlib.sha256(text).hexdigest(),
        "operations": count_operations(description),
    }
    (HERE / "source.json").write_text(json.dumps(source, indent=2) + "\n")
    print(f"{PATH} at {commit[:12]} ({committed}): {source['operations']} operations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
