"""`mendloop init` then the daemon: an empty site (nothing of power-marketing) builds an
engine on the real Neo4j, starts, takes samples it does not know (refused, counted) and
waits for data; a site with a problem refuses to start with site check's messages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kernel.config import Settings
from kernel.errors import SiteError
from mendloop.service import build_engine
from sites.scaffold import scaffold

pytestmark = pytest.mark.neo4j


def test_the_daemon_starts_on_an_empty_site_and_waits(neo4j_settings, tmp_path: Path) -> None:
    scaffold(tmp_path / "site")
    settings = Settings(
        var_dir=tmp_path / "var", neo4j_uri=neo4j_settings.neo4j_uri, site=tmp_path / "site"
    )
    engine = build_engine(settings, progress=lambda _: None)
    try:
        assert not engine.catalog and not engine.library and not engine.domain.faults

        async def run() -> None:
            await engine.start()
            try:
                result = engine.submit(
                    [{"series": "cache_hit_ratio", "labels": {"target": "a"}, "ts": 1, "value": 1}]
                )
                # not in this site's (empty) catalog: refused, with the reason
                assert result.accepted == 0 and len(result.rejected) == 1
                assert engine.loop_running()
                assert engine.store.list() == []
            finally:
                await engine.stop()

        asyncio.run(run())
    finally:
        engine.close()


def test_a_site_with_problems_refuses_to_start(neo4j_settings, tmp_path: Path) -> None:
    scaffold(tmp_path / "site")
    (tmp_path / "site" / "site.yaml").write_text("name: x\ninclude: [no-such-pack]\n")
    settings = Settings(
        var_dir=tmp_path / "var", neo4j_uri=neo4j_settings.neo4j_uri, site=tmp_path / "site"
    )
    with pytest.raises(SiteError, match="unknown pack 'no-such-pack'") as refused:
        build_engine(settings, progress=lambda _: None)
    (problem,) = refused.value.problems
    assert problem.startswith(f"{tmp_path / 'site' / 'site.yaml'}:2: unknown pack 'no-such-pack'")
    assert "power-marketing" in problem  # what it could have named
