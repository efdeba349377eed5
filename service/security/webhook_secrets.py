"""The webhook signing secrets, one per sender, from the environment.

Kept apart from service.settings so the webhook integrations own their configuration. An
unset or empty secret means "not configured": that endpoint answers 503 and never accepts
unsigned data.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Source = Literal["shopify", "easypost", "aftership"]
SOURCES: tuple[Source, ...] = ("shopify", "easypost", "aftership")


def as_source(name: str) -> Source:
    """A stored sender name as a Source; ValueError for one we do not know."""
    for source in SOURCES:
        if source == name:
            return source
    raise ValueError(f"unknown webhook sender {name!r}")


class WebhookSecrets(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    shopify_webhook_secret: SecretStr | None = None
    easypost_webhook_secret: SecretStr | None = None
    aftership_webhook_secret: SecretStr | None = None

    def for_source(self, source: Source) -> str | None:
        """The secret for one sender, or None when it is unset or blank."""
        value: SecretStr | None = getattr(self, f"{source}_webhook_secret")
        secret = value.get_secret_value() if value is not None else ""
        return secret or None


@lru_cache(maxsize=1)
def load_webhook_secrets() -> WebhookSecrets:
    """Read once per process, like the rest of the settings."""
    return WebhookSecrets()
