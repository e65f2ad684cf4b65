"""Who may call the API: API tokens (hashed at rest), roles, and the audit of every change.

    tokens = TokenStore(store.engine)
    issued = tokens.create("alice", Role.approver, by="admin")   # the secret is shown once
    auth = Auth(tokens, AuditLog(store.engine))
    app = create_app(store, ..., auth=auth)

    @router.post("/v1/incidents/{incident_id}/approve")
    def approve(incident_id: str, who: Approver): ...     # 401 / 403 before it runs

A token is ``mlt_<id>_<secret>``: the id finds the row, the secret is compared in constant
time with its SHA-256 (the secret is 256 random bits, so a plain hash is enough; nothing
that could log in is stored). Roles are ordered: viewer < operator < approver < admin; a
route names the least role it needs. Callers send ``Authorization: Bearer <token>``.
Without an ``Auth`` (``create_app(auth=None)``: tests of other concerns, or
``MENDLOOP_API_AUTH=off``) every caller is the anonymous admin, and the server says so
at start.

Every mutating call (POST/PUT/PATCH/DELETE), refused or not, is written to the audit log:
who (token name, or ``unauthenticated``), role, when, method, path, status, client address
and, for calls an endpoint describes, what it did (``note_audit(request, ...)``). Secrets
never reach it: request bodies are not recorded. Metric pushes are tallied a minute at a
time (api/audit_tally.py).
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.audit_tally import PUSH_PATHS, Call, PushTally, Row
from api.metrics import CounterOf
from api.roles import Role
from kernel.errors import MendloopError
from kernel.models import utcnow
from loop.db.engine import aware
from loop.db.migrate import ensure_schema
from loop.db.schema import ApiTokenRecord, AuditRecord

log = logging.getLogger("mendloop.api")

TOKEN_PREFIX = "mlt"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Principal(BaseModel):
    """The caller of one request, as endpoints and the audit see it."""

    model_config = ConfigDict(frozen=True)

    name: str
    role: Role
    token_id: str | None = None
    via: str = "token"  # token | chat | anonymous


ANONYMOUS_ADMIN = Principal(name="anonymous", role=Role.admin, via="anonymous")


class TokenError(MendloopError):
    """A token command that cannot be done (unknown token, bad name)."""


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; they were stored as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class TokenInfo(BaseModel):
    """A token as listed: never its secret."""

    id: str
    name: str
    role: Role
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, row: ApiTokenRecord) -> TokenInfo:
        return cls(
            id=row.id,
            name=row.name,
            role=Role(row.role),
            created_by=row.created_by,
            created_at=aware(row.created_at),
            revoked_at=_aware(row.revoked_at),
            last_used_at=_aware(row.last_used_at),
        )


class IssuedToken(BaseModel):
    info: TokenInfo
    token: str  # shown once, at creation


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    """API tokens in SQL (the incident store's database)."""

    LAST_USED_EVERY_S = 60.0  # last_used_at is refreshed at most this often per token
    LAST_USED_WAIT_S = 0.5  # ... and waits this long for a lock at most

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.last_used_failures = 0  # writes of last_used_at that failed (/metrics)
        ensure_schema(engine)

    def create(self, name: str, role: Role, by: str = "cli") -> IssuedToken:
        name = name.strip()
        if not name or len(name) > 100 or any(c.isspace() for c in name):
            raise TokenError("a token name is 1-100 characters without spaces (e.g. alice)")
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        row = ApiTokenRecord(
            id=token_id,
            name=name,
            role=Role(role).value,
            secret_sha256=_digest(secret),
            created_by=by,
            created_at=utcnow(),
        )
        with Session(self.engine) as session:
            session.add(row)
            session.commit()
            session.refresh(row)
            info = TokenInfo.of(row)
        return IssuedToken(info=info, token=f"{TOKEN_PREFIX}_{token_id}_{secret}")

    def list(self, include_revoked: bool = False) -> list[TokenInfo]:
        with Session(self.engine) as session:
            query = select(ApiTokenRecord).order_by(col(ApiTokenRecord.created_at))
            rows = session.exec(query).all()
            return [TokenInfo.of(r) for r in rows if include_revoked or r.revoked_at is None]

    def revoke(self, id_or_name: str) -> builtins.list[TokenInfo]:
        """Revoke the token with this id, or every live token of this name."""
        with Session(self.engine) as session:
            live = col(ApiTokenRecord.revoked_at).is_(None)
            by_id, by_name = col(ApiTokenRecord.id), col(ApiTokenRecord.name)
            named = or_(by_id == id_or_name, by_name == id_or_name)
            rows = list(session.exec(select(ApiTokenRecord).where(live, named)).all())
            if not rows:
                raise TokenError(f"no live token with id or name {id_or_name!r}")
            for row in rows:
                row.revoked_at = utcnow()
                session.add(row)
            session.commit()
            return [TokenInfo.of(r) for r in rows]

    def verify(self, token: str) -> Principal | None:
        """The caller this token stands for, or None (malformed, unknown, revoked)."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            return None
        _, token_id, secret = parts
        with Session(self.engine) as session:
            row = session.get(ApiTokenRecord, token_id)
            if row is None or row.revoked_at is not None:
                return None
            if not hmac.compare_digest(row.secret_sha256, _digest(secret)):
                return None
            principal = Principal(name=row.name, role=Role(row.role), token_id=row.id)
            last = _aware(row.last_used_at)
        now = utcnow()
        if last is None or (now - last).total_seconds() > self.LAST_USED_EVERY_S:
            self._touch(token_id, now)
        return principal

    def _touch(self, token_id: str, now: datetime) -> None:
        """Note when the token was used: bookkeeping, so it waits at most
        ``LAST_USED_WAIT_S`` for a lock, and a failure (database locked, full, read-only)
        is logged and counted, never the caller's failure."""
        wait_ms = int(self.LAST_USED_WAIT_S * 1000)
        try:
            with self.engine.connect() as conn:
                sqlite = conn.dialect.name == "sqlite"
                if sqlite:  # the connection's own wait, put back before it returns to the pool
                    before = int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0)
                    conn.exec_driver_sql(f"PRAGMA busy_timeout = {wait_ms}")
                    conn.commit()
                try:
                    if conn.dialect.name == "postgresql":
                        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {wait_ms}")
                    conn.execute(
                        update(ApiTokenRecord)
                        .where(col(ApiTokenRecord.id) == token_id)
                        .values(last_used_at=now)
                    )
                    conn.commit()
                finally:
                    if sqlite:
                        conn.rollback()
                        conn.exec_driver_sql(f"PRAGMA busy_timeout = {before}")
                        conn.commit()
        except DBAPIError as exc:
            self.last_used_failures += 1
            log.warning(
                "token %s: last_used_at not written (%d failure(s) so far), the call goes on: %s",
                token_id,
                self.last_used_failures,
                f"{type(exc.orig).__name__}: {exc.orig}".splitlines()[0][:200],
            )


class AuditEntry(BaseModel):
    at: datetime
    actor: str
    role: str
    via: str
    method: str
    path: str
    status: int
    client: str
    detail: str


class AuditLog:
    """Append-only record of who changed what (SQL, beside the incidents)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        ensure_schema(engine)

    def record(
        self,
        actor: Principal | None,
        method: str,
        path: str,
        status: int,
        client: str = "",
        detail: str = "",
    ) -> None:
        row = AuditRecord(
            at=utcnow(),
            actor=actor.name if actor else "unauthenticated",
            role=actor.role.value if actor else "",
            via=actor.via if actor else "",
            method=method[:8],
            path=path[:500],
            status=status,
            client=client[:100],
            detail=detail[:2000],
        )
        with Session(self.engine) as session:
            session.add(row)
            session.commit()

    def entries(self, limit: int = 100, actor: str | None = None) -> list[AuditEntry]:
        with Session(self.engine) as session:
            query = select(AuditRecord).order_by(col(AuditRecord.id).desc())
            if actor:
                query = query.where(AuditRecord.actor == actor)
            rows = session.exec(query.limit(limit)).all()
            return [
                AuditEntry(
                    at=aware(r.at),
                    actor=r.actor,
                    role=r.role,
                    via=r.via,
                    method=r.method,
                    path=r.path,
                    status=r.status,
                    client=r.client,
                    detail=r.detail,
                )
                for r in rows
            ]


class Auth:
    """What the app needs to authenticate and audit; ``None`` in create_app means off."""

    def __init__(self, tokens: TokenStore, audit: AuditLog) -> None:
        self.tokens = tokens
        self.audit = audit
        self.pushes = PushTally()  # metric pushes: audited per minute (api/audit_tally.py)

    def write(self, rows: list[Row]) -> None:
        for call, detail in rows:
            self.audit.record(
                call.actor, call.method, call.path, call.status, client=call.client, detail=detail
            )

    def flush(self) -> None:
        """The pushes' pending repeat counts into the audit log (the daemon stops)."""
        try:
            self.write(self.pushes.flush())
        except Exception:  # the audit must never be silently skipped: say it loudly
            log.exception("audit: the pushes' last repeat counts were not written")

    @classmethod
    def on(cls, engine: Engine) -> Auth:
        return cls(TokenStore(engine), AuditLog(engine))


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def authenticate(request: Request) -> Principal:
    """The caller, from the bearer token; 401 when there is none or it is not valid."""
    auth: Auth | None = getattr(request.app.state, "auth", None)
    if auth is None:
        principal = ANONYMOUS_ADMIN
    else:
        token = bearer(request)
        found = auth.tokens.verify(token) if token else None
        if found is None:
            raise HTTPException(
                status_code=401,
                detail="a valid API token is needed (Authorization: Bearer mlt_...; "
                "create one with `mendloop token create NAME --role ROLE`)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        principal = found
    request.state.principal = principal
    return principal


def require(role: Role) -> Callable[[Request], Principal]:
    """A FastAPI dependency: the caller, who must hold at least ``role`` (else 403)."""

    def dependency(request: Request) -> Principal:
        principal = authenticate(request)
        if not principal.role.allows(role):
            raise HTTPException(
                status_code=403,
                detail=f"{principal.name} is {principal.role}; this needs {role} or above",
            )
        return principal

    dependency.__name__ = f"require_{role.value}"
    return dependency


# Endpoint parameters: ``who: Approver`` is the caller, checked to hold approver or above.
Viewer = Annotated[Principal, Depends(require(Role.viewer))]
Operator = Annotated[Principal, Depends(require(Role.operator))]
Approver = Annotated[Principal, Depends(require(Role.approver))]
Admin = Annotated[Principal, Depends(require(Role.admin))]


def note_audit(request: Request, detail: str) -> None:
    """What a mutating endpoint did, in words, for its audit entry."""
    request.state.audit_detail = detail


def client_of(scope_or_request: Request) -> str:
    client = scope_or_request.client
    forwarded = scope_or_request.headers.get("x-forwarded-for", "")
    where = client.host if client else ""
    return f"{where} (for {forwarded.split(',')[0].strip()})" if forwarded else where


class AuditMiddleware(BaseHTTPMiddleware):
    """Writes one audit entry per mutating call, whatever its outcome."""

    def __init__(self, app: ASGIApp, exempt: Sequence[str] = ()) -> None:
        super().__init__(app)
        self.exempt = tuple(exempt)

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        auth: Auth | None = getattr(request.app.state, "auth", None)
        if request.method in MUTATING and not request.url.path.startswith(self.exempt):
            principal = getattr(request.state, "principal", None)
            detail = getattr(request.state, "audit_detail", "")
            entry = (principal, request.method, request.url.path, response.status_code)
            if auth is not None:
                call = Call(
                    principal,
                    principal.name if principal else "unauthenticated",
                    *entry[1:],
                    client=client_of(request),
                )
                # a push is tallied (the first of its kind a minute is written at once)
                rows = auth.pushes.note(call) if call.path in PUSH_PATHS else [(call, detail)]
                try:
                    if rows:
                        await run_in_threadpool(auth.write, rows)
                except Exception:  # the audit must never be silently skipped: say it loudly
                    log.exception("audit entry not written: %s %s", *entry[1:3])
            else:
                log.info("audit (auth off): %s %s %s %s", *entry)
        return response


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        # except*: BaseHTTPMiddleware (the audit) reads the body in a task group, which
        # hands the refusal on wrapped in an ExceptionGroup
        try:
            await self.app(scope, counting_receive, watching_send)
        except* _TooLarge:
            if not started:
                await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body is larger than {self.max_bytes} bytes"}, status_code=413
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


def install(app: Any, auth: Auth | None, max_body_bytes: int) -> None:
    """Auth state, the audit middleware and the body limit on an app (api/app.py)."""
    app.state.auth = auth
    metrics = getattr(getattr(app.state, "services", None), "metrics", None)
    if auth is not None and metrics is not None:
        metrics.registry.register(
            CounterOf(
                "mendloop_token_last_used_failures",
                "Token last_used_at writes that failed (the authenticated call went on)",
                lambda: auth.tokens.last_used_failures,
            )
        )
    # the last added is the outermost: the audit sees the body limit's 413s too
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(AuditMiddleware)
    if auth is None:
        log.warning("API authentication is OFF: every caller is the anonymous admin")
