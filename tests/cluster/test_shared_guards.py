"""The chat replay guard and the stream tickets shared through PostgreSQL: what one
worker took, another refuses (two engines = two workers' connection pools)."""

from __future__ import annotations

from api.auth import Principal, Role
from api.chatops.signing import replay_key
from api.events import SharedStreamTickets
from loop.cluster.guards import SqlReplayGuard, TicketTable
from loop.db.engine import make_engine
from loop.db.migrate import ensure_schema

from .conftest import needs_postgres

pytestmark = needs_postgres


def two_engines(url: str):
    one, two = make_engine(url), make_engine(url)
    ensure_schema(one)
    return one, two


def test_a_signed_chat_request_is_taken_once_whichever_worker_gets_it(pg_url) -> None:
    one, two = two_engines(pg_url)
    first, second = SqlReplayGuard(one), SqlReplayGuard(two)
    key = replay_key("1700000000", b"payload=approve")
    assert first.first_time(key, 0.0)
    assert not second.first_time(key, 0.0)  # the replay, sent to the other worker
    assert not first.first_time(key, 0.0)
    assert second.first_time(replay_key("1700000001", b"payload=approve"), 0.0)


def test_an_expired_replay_entry_is_pruned(pg_url) -> None:
    one, _ = two_engines(pg_url)
    guard = SqlReplayGuard(one, window_s=-1)  # every entry already past its window
    assert guard.first_time("a" * 64, 0.0)
    guard._pruned = 0.0  # prune at the next offer
    assert guard.first_time("b" * 64, 0.0)
    assert guard.first_time("a" * 64, 0.0)  # pruned: its window is over


def test_a_stream_ticket_opens_one_stream_on_any_worker(pg_url) -> None:
    one, two = two_engines(pg_url)
    issuer = SharedStreamTickets(TicketTable(one))
    other = SharedStreamTickets(TicketTable(two))
    ticket = issuer.issue(Principal(name="alice", role=Role.viewer))
    who = other.redeem(ticket)
    assert who == Principal(name="alice", role=Role.viewer, via="ticket")
    assert issuer.redeem(ticket) is None  # single use, across workers
    assert other.redeem("forged") is None and other.redeem("x" * 500) is None


def test_an_expired_stream_ticket_is_refused(pg_url) -> None:
    one, _ = two_engines(pg_url)
    tickets = SharedStreamTickets(TicketTable(one), ttl_s=-1)
    assert tickets.redeem(tickets.issue(Principal(name="bob", role=Role.admin))) is None
