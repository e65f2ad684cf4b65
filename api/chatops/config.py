"""ChatOps settings, validated once at start from the one Settings object (MENDLOOP_CHAT_*).

    config = ChatConfig.from_settings(settings)     # ConfigError when they cannot work
    config.outgoing, config.incoming                # what is switched on

Outgoing goes to Slack's Web API (``chat_api_url`` + ``chat_bot_token`` + ``chat_channel``:
threads per incident) or else to an incoming webhook (``chat_webhook_url``: Slack or
Mattermost, unthreaded). Incoming callbacks need ``chat_signing_secret``; without it the
endpoints answer 503. ``chat_users`` maps chat user ids to mendloop names and roles.

A button's ``response_url`` comes from a request's body: mendloop posts to it only when
``config.response_refusal(url)`` is None, i.e. https (http only to a loopback address) on
a host of the allow-list: Slack's ``hooks.slack.com``, the hosts of the configured API and
webhook URLs, and ``chat_response_hosts`` (``host`` or ``host:port``, comma-separated).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from api.auth import Role
from api.chatops.commands import ChatInputError, parse_users
from kernel.errors import ConfigError

SLACK_RESPONSE_HOST = ("hooks.slack.com", 443)  # where Slack's response_urls point
_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?|\[[0-9a-f:.]+\]")
_PRINTABLE = re.compile(r"[\x21-\x7e]{1,2000}")  # no space, control or non-ASCII character

HostPort = tuple[str, int]


def _default_port(scheme: str) -> int:
    return 80 if scheme == "http" else 443


def host_port(url: str) -> HostPort | None:
    """(host, port) of an http(s) URL, None when it has none or cannot be read."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname.lower(), port or _default_port(parts.scheme)


def parse_hosts(spec: str) -> tuple[HostPort, ...]:
    """``"hooks.example.com, chat.local:8443"`` -> ((host, port), ...); port 443 unless
    named. ValueError on an entry that is not a host name or address."""
    hosts: list[HostPort] = []
    for raw in spec.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        host, port = item, 443
        if ":" in item and not item.endswith("]"):
            host, _, number = item.rpartition(":")
            if not number.isdigit() or not 0 < int(number) < 65536:
                raise ValueError(f"{raw.strip()!r}: bad port")
            port = int(number)
        if not _HOST.fullmatch(host):
            raise ValueError(f"{raw.strip()!r} is not a host name (host or host:port)")
        hosts.append((host.strip("[]"), port))
    return tuple(hosts)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ChatConfig:
    webhook_url: str = ""
    api_url: str = ""
    bot_token: str = field(default="", repr=False)
    channel: str = ""
    signing_secret: str = field(default="", repr=False)
    users: dict[str, tuple[str, Role]] = field(default_factory=dict)
    response_hosts: tuple[HostPort, ...] = ()  # beyond Slack's and the configured URLs' hosts
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

    def allowed_response_hosts(self) -> frozenset[HostPort]:
        """Where a ``response_url`` may point: Slack's hooks host, the hosts of the
        configured API and webhook URLs, and ``response_hosts``."""
        configured = (host_port(url) for url in (self.api_url, self.webhook_url) if url)
        return frozenset(
            (SLACK_RESPONSE_HOST, *(h for h in configured if h is not None), *self.response_hosts)
        )

    def response_refusal(self, url: str) -> str | None:
        """None when mendloop may POST to this ``response_url``, else why not (never
        fetched then): https on an allowed host; http only to a loopback address."""
        if not _PRINTABLE.fullmatch(url):
            return "not a plain URL (spaces, control or non-ASCII characters, or too long)"
        try:
            parts = urlsplit(url)
        except ValueError:
            return "not a URL"
        where = host_port(url)
        if where is None:
            return "not an http(s) URL with a host"
        if parts.username is not None or parts.password is not None:
            return "credentials in the URL"
        if parts.scheme != "https" and not _loopback(where[0]):
            return "not https"
        if where not in self.allowed_response_hosts():
            return f"host {where[0]}:{where[1]} is not allowed (MENDLOOP_CHAT_RESPONSE_HOSTS)"
        return None

    @classmethod
    def from_settings(cls, settings: Any) -> ChatConfig:
        """From kernel.config.Settings (its ``chat_*`` fields); ConfigError says what to fix."""
        try:
            users = parse_users(settings.chat_users)
        except ChatInputError as exc:
            raise ConfigError(f"MENDLOOP_CHAT_USERS: {exc}") from exc
        try:
            response_hosts = parse_hosts(settings.chat_response_hosts)
        except ValueError as exc:
            raise ConfigError(f"MENDLOOP_CHAT_RESPONSE_HOSTS: {exc}") from exc
        config = cls(
            webhook_url=settings.chat_webhook_url,
            api_url=settings.chat_api_url,
            bot_token=settings.chat_bot_token,
            channel=settings.chat_channel,
            signing_secret=settings.chat_signing_secret,
            users=users,
            response_hosts=response_hosts,
            queue_size=settings.chat_queue_size,
            max_attempts=settings.chat_max_attempts,
            backoff_s=settings.chat_backoff_s,
            timeout_s=settings.chat_timeout_s,
        )
        for name, url in (("WEBHOOK_URL", config.webhook_url), ("API_URL", config.api_url)):
            if url and host_port(url) is None:
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
