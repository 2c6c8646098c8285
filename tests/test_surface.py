"""The original provider's surface: class attributes, models, prompts, images."""

from __future__ import annotations

import pytest

import replicate_home
from replicate_home import (
    ImageResponse,
    ModelNotSupportedError,
    ReplicateHome,
    ReplicateHomeError,
    format_prompt,
)

SPEC_VERSIONS = {
    "stability-ai/stable-diffusion-3": (
        "527d2a6296facb8e47ba1eaf17f142c240c19a30894f437feee9b91cc29d8e4f"
    ),
    "bytedance/sdxl-lightning-4step": (
        "5f24084160c9089501c1b3545d9be3c27883ae2239b6f412990e82d4a6210f8f"
    ),
    "playgroundai/playground-v2.5-1024px-aesthetic": (
        "a45f82a1382bed5c7aeb861dac7c7d191b0fdf74d8d57c4a0e6ed7d4d0bf7d24"
    ),
    "google-deepmind/gemma-2b-it": (
        "dff94eaf770e1fc211e425a50b51baa8e4cac6c39ef074681f9e39d778773626"
    ),
}


def test_class_attributes_match_the_spec() -> None:
    assert ReplicateHome.url == "https://replicate.com"
    assert ReplicateHome.api_endpoint == "https://homepage.replicate.com/api/prediction"
    assert ReplicateHome.working is True
    assert ReplicateHome.supports_stream is True
    assert ReplicateHome.default_model == "google-deepmind/gemma-2b-it"
    assert ReplicateHome.default_image_model == "stability-ai/stable-diffusion-3"
    assert ReplicateHome.image_models == [
        "stability-ai/stable-diffusion-3",
        "bytedance/sdxl-lightning-4step",
        "playgroundai/playground-v2.5-1024px-aesthetic",
    ]
    assert ReplicateHome.text_models == ["google-deepmind/gemma-2b-it"]
    assert ReplicateHome.models == ReplicateHome.text_models + ReplicateHome.image_models
    assert ReplicateHome.model_aliases == {
        "sd-3": "stability-ai/stable-diffusion-3",
        "sdxl": "bytedance/sdxl-lightning-4step",
        "playground-v2.5": "playgroundai/playground-v2.5-1024px-aesthetic",
        "gemma-2b": "google-deepmind/gemma-2b-it",
    }
    assert ReplicateHome.model_versions == SPEC_VERSIONS


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "google-deepmind/gemma-2b-it"),
        ("", "google-deepmind/gemma-2b-it"),
        ("gemma-2b", "google-deepmind/gemma-2b-it"),
        ("sd-3", "stability-ai/stable-diffusion-3"),
        ("sdxl", "bytedance/sdxl-lightning-4step"),
        ("playground-v2.5", "playgroundai/playground-v2.5-1024px-aesthetic"),
        *((name, name) for name in SPEC_VERSIONS),
    ],
)
def test_get_model_resolves_names_and_aliases(given: str | None, expected: str) -> None:
    assert ReplicateHome.get_model(given) == expected


@pytest.mark.parametrize("bad", ["gpt-4", "GEMMA-2B", " sd-3", 42, ["sd-3"]])
def test_get_model_rejects_unknown_models_naming_the_supported_ones(bad: object) -> None:
    with pytest.raises(ModelNotSupportedError) as caught:
        ReplicateHome.get_model(bad)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ReplicateHomeError)
    message = str(caught.value)
    assert "google-deepmind/gemma-2b-it" in message
    assert "sd-3" in message


def test_mutating_class_lists_does_not_change_resolution() -> None:
    # The catalog is the source of truth; the class lists are copies for compatibility.
    ReplicateHome.model_aliases["gpt"] = "x"
    try:
        with pytest.raises(ModelNotSupportedError):
            ReplicateHome.get_model("gpt")
    finally:
        del ReplicateHome.model_aliases["gpt"]


def test_format_prompt_single_message_is_its_content() -> None:
    assert format_prompt([{"role": "user", "content": "A cat in a hat"}]) == "A cat in a hat"


def test_format_prompt_several_messages() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell a joke"},
    ]
    assert format_prompt(messages) == (
        "System: Be brief.\nUser: Hi\nAssistant: Hello!\nUser: Tell a joke\nAssistant:"
    )


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([], "empty"),
        ("hello", "list"),
        (None, "list"),
        ([{"role": "user"}], "'content'"),
        ([{"content": "x"}], "'role'"),
        (["hello"], "mapping"),
        ([{"role": "user", "content": 3}], "strings"),
    ],
)
def test_format_prompt_rejects_malformed_messages(messages: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        format_prompt(messages)  # type: ignore[arg-type]


def test_image_response_renders_markdown() -> None:
    one = ImageResponse("https://x/1.png", "a [cat]")
    assert str(one) == "![a \\[cat\\]](https://x/1.png)"
    assert one.images == ["https://x/1.png"]
    two = ImageResponse(["https://x/1.png", "https://x/2.png"], "cat", {"size": 64})
    assert str(two) == "![#1 cat](https://x/1.png)\n![#2 cat](https://x/2.png)"
    assert two.options == {"size": 64}
    assert two == ImageResponse(["https://x/1.png", "https://x/2.png"], "cat", {"size": 64})


@pytest.mark.parametrize("images", [[1], 3, None, [None]])
def test_image_response_rejects_non_urls(images: object) -> None:
    with pytest.raises(ValueError, match="URL"):
        ImageResponse(images, "alt")  # type: ignore[arg-type]


def test_public_names_are_exported() -> None:
    for name in replicate_home.__all__:
        assert hasattr(replicate_home, name), name
    errors = [
        getattr(replicate_home, name)
        for name in replicate_home.__all__
        if isinstance(getattr(replicate_home, name), type)
        and issubclass(getattr(replicate_home, name), BaseException)
    ]
    assert len(errors) >= 10
    assert all(issubclass(error, ReplicateHomeError) for error in errors)
    assert issubclass(replicate_home.PredictionTimeout, TimeoutError)
    assert issubclass(replicate_home.UnexpectedResponseFormat, ValueError)
    assert issubclass(replicate_home.RateLimitError, replicate_home.ResponseStatusError)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"timeout": "10"}, "timeout"),
        ({"poll_interval": -1}, "poll_interval"),
        ({"base_url": "ftp://x"}, "base_url"),
        ({"base_url": "not a url"}, "base_url"),
        ({"proxy": 3}, "proxy"),
    ],
)
def test_client_rejects_bad_options(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        ReplicateHome(**kwargs)  # type: ignore[arg-type]


def test_base_url_comes_from_argument_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_HOME_BASE_URL", "http://127.0.0.1:1234/")
    assert ReplicateHome().base_url == "http://127.0.0.1:1234"
    assert ReplicateHome("https://example.test").base_url == "https://example.test"
    monkeypatch.delenv("REPLICATE_HOME_BASE_URL")
    assert ReplicateHome().base_url == "https://homepage.replicate.com"
