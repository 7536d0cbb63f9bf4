"""Which providers this process can call, built once from settings."""

from __future__ import annotations

from service.generation.providers.base import Provider
from service.generation.providers.fake import FakeProvider

__all__ = ["build_providers"]


def build_providers(
    openai_api_key: str | None = None,
    openai_base_url: str | None = None,
    anthropic_api_key: str | None = None,
    anthropic_base_url: str | None = None,
) -> dict[str, Provider]:
    """``fake`` always; ``openai`` / ``anthropic`` only when their API key is given."""
    providers: dict[str, Provider] = {"fake": FakeProvider()}
    # Imported here so a deployment without keys never pays for loading the SDKs.
    if openai_api_key:
        from service.generation.providers.openai import OpenAIProvider

        providers["openai"] = OpenAIProvider(openai_api_key, openai_base_url)
    if anthropic_api_key:
        from service.generation.providers.anthropic import AnthropicProvider

        providers["anthropic"] = AnthropicProvider(anthropic_api_key, anthropic_base_url)
    return providers
