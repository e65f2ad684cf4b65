"""ChatOps settings, validated once at start from the one Settings object (MENDLOOP_CHAT_*).

    config = ChatConfig.from_settings(settings)     # ConfigError when they cannot work
    config.outgoing, config.incoming                # what is switched on

Outgoing goes to Slack's Web API (``chat_api_url`` + ``chat_bot_token`` + ``chat_channel``:
threads per incident) or else to an incoming webhook (``chat_webhook_url``: Slack or
Mattermost, unthreaded). Incoming callbacks need ``chat_signing_secret``; without it the
endpoints answer 503. ``chat_users`` maps chat users to mendloop names and roles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from api.auth import Role
from api.chatops.commands import ChatInputError, parse_users
from loop.errors import ConfigError


@dataclass(frozen=True)
class ChatConfig:
    webhook_url: str = ""
    api_url: str = ""
    bot_token: str = field(default="", repr=False)
    channel: str = ""
    signing_secret: str = field(default="", repr=False)
    users: dict[str, tuple[str, Role]] = field(default_factory=dict)
    queue_size: int = 1000
    max_attempts: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 10.0

    @property
    def threaded(self) -> bool:
        return bool(self.api_url)

    @property
    def outgoing(self) -> bool:
        return bool(self.api_url or self.webhook_url)

    @property
    def incoming(self) -> bool:
        return bool(self.signing_secret)

    @classmethod
    def from_settings(cls, settings: Any) -> ChatConfig:
        """From loop.config.Settings (its ``chat_*`` fields); ConfigError says what to fix."""
        try:
            users = parse_users(settings.chat_users)
        except ChatInputError as exc:
            raise ConfigError(f"MENDLOOP_CHAT_USERS: {exc}") from exc
        config = cls(
            webhook_url=settings.chat_webhook_url,
            api_url=settings.chat_api_url,
            bot_token=settings.chat_bot_token,
            channel=settings.chat_channel,
            signing_secret=settings.chat_signing_secret,
            users=users,
            queue_size=settings.chat_queue_size,
            max_attempts=settings.chat_max_attempts,
            backoff_s=settings.chat_backoff_s,
            timeout_s=settings.chat_timeout_s,
        )
        for name, url in (("WEBHOOK_URL", config.webhook_url), ("API_URL", config.api_url)):
            if url and urlsplit(url).scheme not in ("http", "https"):
                raise ConfigError(f"MENDLOOP_CHAT_{name}={url!r} is not an http(s) URL")
        if config.api_url and not (config.bot_token and config.channel):
            raise ConfigError(
                "MENDLOOP_CHAT_API_URL needs MENDLOOP_CHAT_BOT_TOKEN and MENDLOOP_CHAT_CHANNEL "
                "(or use MENDLOOP_CHAT_WEBHOOK_URL for an incoming webhook)"
            )
        if users and not config.signing_secret:
            raise ConfigError("MENDLOOP_CHAT_USERS is set but MENDLOOP_CHAT_SIGNING_SECRET is not")
        if settings.environment == "production":
            for name, url in (("WEBHOOK_URL", config.webhook_url), ("API_URL", config.api_url)):
                if url.startswith("http://"):
                    raise ConfigError(f"MENDLOOP_CHAT_{name} must be https in production")
        return config
