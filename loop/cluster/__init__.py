"""Scale-out: N workers on one PostgreSQL (docs/SCALING.md).

    leases.py   the worker and target_lease tables: heartbeats, acquisition, rebalance
    fence.py    the fencing of the writes that matter (the lease's epoch, DATABASE clock)
    worker.py   the coordinator task of one worker (ticks, takeover, LISTEN/NOTIFY, polling)
    forward.py  pushed samples of targets another worker owns: forwarded to it, or refused
    guards.py   the chat replay guard and the single-use stream tickets, in SQL
    single.py   SQLite: one worker only (a lock file next to the database)

No home-made consensus: PostgreSQL's row locks (``FOR UPDATE SKIP LOCKED``, ``FOR SHARE``)
and its clock decide who owns what.
"""
