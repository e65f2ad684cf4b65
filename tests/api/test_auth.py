"""API tokens (api/auth.py) over a real SQLite database: create, verify, revoke, the secret
never stored, and the `mendloop token` CLI."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from api.auth import TOKEN_PREFIX, AuditLog, Role, TokenError, TokenStore
from loop.store import IncidentStore


@pytest.fixture
def store(tmp_path):
    store = IncidentStore(f"sqlite:///{tmp_path / 'auth.db'}")
    yield store
    store.close()


def test_roles_are_ordered() -> None:
    assert Role.admin.allows(Role.approver) and Role.approver.allows(Role.operator)
    assert Role.operator.allows(Role.viewer) and Role.viewer.allows(Role.viewer)
    assert not Role.viewer.allows(Role.operator) and not Role.approver.allows(Role.admin)


def test_create_verify_revoke(store) -> None:
    tokens = TokenStore(store.engine)
    issued = tokens.create("alice", Role.approver, by="admin")
    assert issued.token.startswith(f"{TOKEN_PREFIX}_{issued.info.id}_")
    who = tokens.verify(issued.token)
    assert who is not None and (who.name, who.role, who.via) == ("alice", Role.approver, "token")
    assert tokens.list()[0].last_used_at is not None
    # a wrong secret, a wrong id, junk: nobody
    assert tokens.verify(issued.token[:-2] + "xx") is None
    assert tokens.verify(f"{TOKEN_PREFIX}_ffffffffffff_{issued.token.split('_', 2)[2]}") is None
    assert tokens.verify("Bearer nonsense") is None
    revoked = tokens.revoke("alice")
    assert [t.id for t in revoked] == [issued.info.id] and revoked[0].revoked_at is not None
    assert tokens.verify(issued.token) is None
    assert tokens.list() == [] and len(tokens.list(include_revoked=True)) == 1
    with pytest.raises(TokenError):
        tokens.revoke("alice")  # nothing live left of that name


def test_bad_names_are_refused(store) -> None:
    tokens = TokenStore(store.engine)
    for name in ("", "two words", "x" * 101):
        with pytest.raises(TokenError):
            tokens.create(name, Role.viewer)


def test_the_secret_is_never_stored(store, tmp_path) -> None:
    tokens = TokenStore(store.engine)
    issued = tokens.create("bob", Role.admin)
    secret = issued.token.split("_", 2)[2]
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM api_token")).all()
    stored = json.dumps([list(map(str, r)) for r in rows])
    assert secret not in stored and issued.token not in stored
    store.close()
    assert secret.encode() not in (tmp_path / "auth.db").read_bytes()
    assert "secret" not in issued.info.model_dump_json()  # listing never shows it


def test_audit_log_is_newest_first_and_filterable(store) -> None:
    audit = AuditLog(store.engine)
    tokens = TokenStore(store.engine)
    who = tokens.verify(tokens.create("op", Role.operator).token)
    audit.record(who, "POST", "/v1/a", 200, client="10.0.0.1", detail="did a")
    audit.record(None, "POST", "/v1/b", 401)
    entries = audit.entries()
    assert [(e.actor, e.path, e.status) for e in entries] == [
        ("unauthenticated", "/v1/b", 401),
        ("op", "/v1/a", 200),
    ]
    assert [e.detail for e in audit.entries(actor="op")] == ["did a"]


def test_token_cli_create_list_revoke(tmp_path, monkeypatch, capsys) -> None:
    from mendloop.cli import main

    db = tmp_path / "cli.db"
    monkeypatch.setenv("MENDLOOP_DATABASE_URL", f"sqlite:///{db}")
    assert main(["token", "create", "carol", "--role", "operator", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["name"] == "carol" and created["role"] == "operator"
    token = created["token"]
    store = IncidentStore(f"sqlite:///{db}")
    try:
        who = TokenStore(store.engine).verify(token)
        assert who is not None and who.role == Role.operator
    finally:
        store.close()
    assert main(["token", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["tokens"]
    assert [t["name"] for t in listed] == ["carol"] and "token" not in listed[0]
    assert token.split("_", 2)[2] not in json.dumps(listed)
    assert main(["token", "revoke", created["id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["revoked"][0]["id"] == created["id"]
    assert main(["token", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == []
    assert main(["token", "revoke", "carol"]) == 2  # nothing live: a clear error, exit 2
    assert "no live token" in capsys.readouterr().err
    assert main(["token", "create", "dave", "--role", "viewer"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("mlt_") and "shown only now" in out.err


def test_a_read_goes_on_when_last_used_at_cannot_be_written(store, tmp_path) -> None:
    """Another connection holds SQLite's write lock past the busy timeout: the token's
    last_used_at cannot be written, the caller is still served (logged and counted)."""
    import sqlite3

    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.auth import Auth

    auth = Auth.on(store.engine)
    issued = auth.tokens.create("erin", Role.viewer)
    client = TestClient(create_app(store, auth=auth))
    lock = sqlite3.connect(tmp_path / "auth.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # a writer elsewhere: reads go on, writes wait
    lock.execute("UPDATE api_token SET created_by = created_by")
    try:
        who = auth.tokens.verify(issued.token)  # first use: last_used_at is due
        assert who is not None and who.name == "erin"
        assert auth.tokens.last_used_failures == 1
        with store.engine.connect() as conn:  # the tokens' wait did not stay on the pool
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        answer = client.get("/v1/whoami", headers={"Authorization": f"Bearer {issued.token}"})
        assert answer.status_code == 200 and answer.json()["name"] == "erin"
        assert auth.tokens.last_used_failures == 2
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert auth.tokens.verify(issued.token) is not None  # written now
    assert auth.tokens.list()[0].last_used_at is not None
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {issued.token}"}).text
    assert "mendloop_token_last_used_failures_total 2.0" in metrics


@pytest.mark.skipif(
    not __import__("os").environ.get("MENDLOOP_TEST_POSTGRES_URL"),
    reason="MENDLOOP_TEST_POSTGRES_URL not set",
)
def test_a_read_goes_on_when_postgresql_holds_the_token_row_locked() -> None:
    import os
    import uuid

    from loop.db.engine import make_engine

    url = os.environ["MENDLOOP_TEST_POSTGRES_URL"]
    schema = f"t_{uuid.uuid4().hex[:8]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    store = IncidentStore(f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}")
    try:
        tokens = TokenStore(store.engine)
        issued = tokens.create("frank", Role.viewer)
        with store.engine.connect() as other:  # a writer elsewhere holds the table
            other.execute(text("LOCK TABLE api_token IN EXCLUSIVE MODE"))  # reads still go on
            who = tokens.verify(issued.token)
            assert who is not None and who.name == "frank"
            assert tokens.last_used_failures == 1
            other.rollback()
        assert tokens.verify(issued.token) is not None and tokens.list()[0].last_used_at
    finally:
        store.close()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
