"""One validated Settings object; passed explicitly to whatever needs it.

Environment variables with the prefix ``MENDLOOP_`` override an optional YAML config file
(``mendloop --config FILE run``), which overrides the ``settings:`` of the site's
site.yaml (non-secret fields only), which override the defaults; Neo4j keeps its
conventional ``NEO4J_URI``, ``NEO4J_USER`` and ``NEO4J_PASSWORD``.

    >>> s = Settings()            # embedded defaults: SQLite file under var/, local Neo4j
    >>> s.database_url.endswith("var/mendloop.db")
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from kernel.errors import ConfigError
from kernel.shadow import ShadowScope

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKS_DIR = REPO_ROOT / "packs"  # the bundled packs (package data: docs/SITES.md)
TWIN_PACK = PACKS_DIR / "power-marketing"  # the twin's estate as a pack
DEFAULT_SITE = PACKS_DIR / "twin-site"  # the site used when none is given
DEV_NEO4J_PASSWORD = "mendloop-dev"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MENDLOOP_", extra="forbid", frozen=True)

    environment: Literal["development", "production"] = "development"
    var_dir: Path = REPO_ROOT / "var"
    database_url: str = ""

    api_host: str = "127.0.0.1"
    api_port: int = Field(8080, ge=0, le=65535)
    api_auth: bool = Field(True, description="API tokens and roles; off: anonymous admin")
    api_max_body_bytes: int = Field(16 * 1024 * 1024, gt=0, description="413 beyond")
    api_token: str = Field(
        "", repr=False, description="the token CLI commands send to the daemon (a client secret)"
    )

    neo4j_uri: str = Field(
        "bolt://127.0.0.1:7687", validation_alias=AliasChoices("NEO4J_URI", "MENDLOOP_NEO4J_URI")
    )
    neo4j_user: str = Field(
        "neo4j", validation_alias=AliasChoices("NEO4J_USER", "MENDLOOP_NEO4J_USER")
    )
    neo4j_password: str = Field(
        DEV_NEO4J_PASSWORD,
        validation_alias=AliasChoices("NEO4J_PASSWORD", "MENDLOOP_NEO4J_PASSWORD"),
    )
    neo4j_heap: str = "768m"
    neo4j_pagecache: str = "128m"

    twin_host: str = "127.0.0.1"
    twin_port: int = Field(9108, ge=0, le=65535)

    # several workers on one PostgreSQL (loop/cluster/, docs/SCALING.md); SQLite: one worker
    worker_lease_ttl_s: float = Field(
        15.0, ge=3, le=600, description="a dead worker's targets are taken over after this"
    )
    worker_url: str = Field(
        "", description="this worker's API as its peers reach it (default: api_host:api_port)"
    )

    prometheus_url: str = Field("", description="pull every catalog series from this Prometheus")
    prometheus_interval_s: float = Field(5.0, gt=0)

    site: Path | None = Field(
        None, description="the site directory (docs/SITES.md); none: the bundled twin site"
    )
    alerts_file: Path | None = Field(
        None,
        description="alerts.yaml: which Alertmanager alerts drive which catalog series "
        "(docs/INTAKE.md); without it every alert is counted as unmapped",
    )

    window_s: int = Field(300, ge=10, description="sliding-window length per series")
    # intake cardinality (loop/windows.py Limits): past these, new series/targets are refused
    max_series: int = Field(100_000, gt=0, description="live series in the monitor")
    max_targets: int = Field(2_000, gt=0, description="live targets in the monitor")
    max_series_per_token: int = Field(50_000, gt=0, description="live series one token created")
    max_targets_per_token: int = Field(1_000, gt=0, description="live targets one token created")
    verify_hold_s: float = Field(5.0, gt=0, description="metrics must stay healthy this long")
    verify_timeout_s: float = Field(600.0, gt=0, description="paper: verified within 10 min")
    playbook_timeout_s: int = Field(300, gt=0)
    match_min_similarity: float = Field(0.8, ge=0, le=1)

    shadow: str = Field(
        "", description="run without executing: `all`, or `target:NAME,solution:ID,...`"
    )
    autonomy_max_per_target_per_hour: int = Field(
        6, ge=0, description="automatic fixes on one target per hour; more wait for approval"
    )
    autonomy_max_per_hour: int = Field(30, ge=0, description="automatic fixes per hour in all")
    autonomy_new_target_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="share of the hourly automatic fixes that targets reporting for less "
        "than loop_established_s may take together",
    )

    # loop resilience and admission (loop/admission.py, loop/supervise.py)
    loop_max_opens_per_minute: int = Field(
        60, ge=1, description="incidents opened per minute; more findings wait, best rank first"
    )
    loop_max_concurrent_runs: int = Field(
        4, ge=1, description="incidents in their dry run / run steps at once; others queue by rank"
    )
    loop_held_max: int = Field(
        10_000, ge=1, description="findings waiting to become incidents; the lowest-ranked drop"
    )
    loop_established_s: float = Field(
        300.0, ge=0, description="a target reporting this long ranks before newer ones"
    )
    loop_retry_max_s: float = Field(30.0, gt=0, description="longest wait between retries")
    # anomalies no rule explains (loop/sustained.py): an incident, ranked without rules
    unexplained_min_series: int = Field(
        3, ge=0, description="series of a target abnormal at once that page without a rule; 0: off"
    )
    unexplained_min_duration_s: float = Field(
        30.0, ge=0, description="how long they must stay abnormal before they page"
    )
    log_summary_s: float = Field(
        60.0, gt=0, description="repeating input-quality warnings: one summary line per interval"
    )

    # ChatOps (api/chatops, docs/CHATOPS.md): validated at start by ChatConfig.from_settings
    chat_webhook_url: str = Field("", description="incoming webhook (Slack/Mattermost): no threads")
    chat_api_url: str = Field("", description="Slack Web API base, e.g. https://slack.com/api")
    chat_bot_token: str = Field("", repr=False, description="bot token for chat.postMessage")
    chat_channel: str = Field("", description="channel id the Web API posts to")
    chat_signing_secret: str = Field("", repr=False, description="verifies chat callbacks")
    chat_users: str = Field("", description="CHATUSERID=name:role,... (others are viewers)")
    chat_response_hosts: str = Field(
        "", description="host[:port],... response_urls may point to, besides Slack's and ours"
    )
    chat_queue_size: int = Field(1000, gt=0, description="messages waiting; more are dropped")
    chat_max_attempts: int = Field(5, gt=0, description="deliveries of one message")
    chat_backoff_s: float = Field(1.0, gt=0, description="first retry delay, doubling")
    chat_timeout_s: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _defaults_and_safety(self) -> Settings:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.var_dir / 'mendloop.db'}")
        try:
            ShadowScope.parse(self.shadow)
        except ValueError as exc:
            raise ConfigError(f"MENDLOOP_SHADOW: {exc}") from exc
        if self.environment == "production" and self.neo4j_password == DEV_NEO4J_PASSWORD:
            raise ConfigError("NEO4J_PASSWORD is the development default; set a real one")
        return self

    def neo4j_environ(self) -> dict[str, str]:
        """This Neo4j connection as a child process' environment (a daemon, a worker)."""
        return {
            "NEO4J_URI": self.neo4j_uri,
            "NEO4J_USER": self.neo4j_user,
            "NEO4J_PASSWORD": self.neo4j_password,
        }

    @property
    def uses_local_neo4j(self) -> bool:
        """NEO4J_URI is a bolt/neo4j URI on this machine: ours to start when nothing answers."""
        parts = urlsplit(self.neo4j_uri)
        return parts.scheme in ("bolt", "neo4j") and parts.hostname in ("127.0.0.1", "localhost")

    @property
    def site_dir(self) -> Path:
        """The site this process serves: ``site`` or the bundled twin site."""
        return self.site if self.site is not None else DEFAULT_SITE

    @property
    def neo4j_bolt_port(self) -> int:
        return urlsplit(self.neo4j_uri).port or 7687


# what a site.yaml may set: never a secret (a site is shared, versioned, reviewed)
SECRET_FIELDS = frozenset(
    {"api_token", "neo4j_password", "neo4j_user", "chat_bot_token", "chat_signing_secret", "site"}
)


def _yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def site_settings(site_dir: Path) -> dict[str, Any]:
    """The ``settings:`` of a site's site.yaml (empty without one); ConfigError for a
    secret or an unknown field (sites/ reports the same with its line)."""
    path = site_dir / "site.yaml"
    if not path.is_file():
        return {}
    values = _yaml_mapping(path, "site.yaml").get("settings") or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: settings must be a mapping")
    bad = sorted(set(values) & SECRET_FIELDS)
    if bad:
        raise ConfigError(f"{path}: settings may not hold {', '.join(bad)} (use the environment)")
    unknown = sorted(set(values) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}")
    return {str(k): v for k, v in values.items()}


def load_settings(config_file: Path | None = None, site: Path | None = None) -> Settings:
    """Settings from the site's site.yaml ``settings:``, an optional YAML file, and the
    MENDLOOP_*/NEO4J_* env vars, each over the one before; ``site`` (``--site``) beats
    MENDLOOP_SITE and the file's ``site:``."""
    data = _yaml_mapping(config_file, "config") if config_file is not None else {}
    first = _with_site(_from(config_file, data), site)
    extra = site_settings(first.site_dir)
    if not extra:
        return first
    return _with_site(_from(config_file, {**extra, **data, "site": first.site}), site)


def _with_site(settings: Settings, site: Path | None) -> Settings:
    return settings if site is None else settings.model_copy(update={"site": site})


def _from(config_file: Path | None, data: dict[str, Any]) -> Settings:
    if not data:
        return Settings()

    class _FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            # env beats file: the file values come in as the lowest-priority init source
            return env_settings, init_settings

    try:
        return _FileSettings(**data)
    except ValueError as exc:
        raise ConfigError(f"{config_file or 'site settings'}: {exc}") from exc
