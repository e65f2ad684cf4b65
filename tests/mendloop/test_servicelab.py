"""The service lab on real processes: a Debian redis-server and prometheus-redis-exporter
scraped by a real Prometheus with the lab's target label, a crash seen there, a process a
playbook would have started detached stopped with the lab through its pid file (and a pid
file naming another program left alone), and a lab site that passes `site check`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from mendloop.labsite import check, write_site
from mendloop.servicelab import Lab, LabError, free_port

REDIS = "/usr/bin/redis-server"
EXPORTER = "/usr/bin/prometheus-redis-exporter"


def redis_up(prom_url: str) -> list[tuple[dict[str, str], float]]:
    answer = httpx.get(f"{prom_url}/api/v1/query", params={"query": "redis_up"}, timeout=5)
    return [(r["metric"], float(r["value"][1])) for r in answer.json()["data"]["result"]]


def test_lab_runs_a_scraped_service_and_stops_everything(tmp_path: Path) -> None:
    port, exporter_port = free_port(), free_port()
    with Lab(tmp_path / "lab") as lab:
        redis = lab.spawn("redis", [REDIS, "--port", str(port), "--bind", "127.0.0.1",
                                    "--save", "", "--appendonly", "no"])  # fmt: skip
        lab.wait_port(port, redis)
        exporter = lab.spawn(
            "exporter",
            [EXPORTER, f"--redis.addr=redis://127.0.0.1:{port}",
             f"--web.listen-address=127.0.0.1:{exporter_port}"],
        )  # fmt: skip
        lab.wait_http(f"http://127.0.0.1:{exporter_port}/metrics", exporter)
        prom = lab.prometheus(
            {"redis": [f"127.0.0.1:{exporter_port}"]}, labels={"redis": {"target": "redis-1"}}
        )
        up = lab.wait(lambda: redis_up(prom.url), "redis_up in Prometheus", 30, [prom])
        assert up[0][0]["target"] == "redis-1" and up[0][1] == 1.0
        redis.kill()
        lab.wait(lambda: redis_up(prom.url)[0][1] == 0.0, "redis_up 0 after the crash", 30)
        with pytest.raises(LabError, match="redis exited"):
            lab.wait(lambda: False, "never", 5, [redis])

        # what a playbook starts detached: stopped with the lab, by its pid file's identity
        pidfile = tmp_path / "detached.pid"
        detached = subprocess.Popen(
            [REDIS, "--port", str(free_port()), "--bind", "127.0.0.1", "--save", "",
             "--pidfile", str(pidfile)], start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        lab.wait(pidfile.exists, "the detached redis' pid file", 10)
        lab.adopt_pidfile(pidfile, REDIS)
        other = tmp_path / "other.pid"  # names a live program that is not redis
        sleeper = subprocess.Popen(["sleep", "60"])
        other.write_text(str(sleeper.pid))
        lab.adopt_pidfile(other, REDIS)
        procs = list(lab.procs)
    assert all(not p.alive for p in procs)
    assert detached.wait(10) is not None
    assert sleeper.poll() is None  # another program's pid is never signalled
    sleeper.kill()
    sleeper.wait()


def test_a_lab_site_passes_site_check(tmp_path: Path) -> None:
    site = write_site(
        tmp_path / "site",
        "lab",
        include=["linux-host"],
        targets={"host-1": {"components": ["process"], "hosts": ["host-1"]}},
        hosts={"host-1": {"mendloop_processes": {}}},
    )
    assert check(site) == []
    assert (site / "inventory" / "hosts.yaml").is_file()
    broken = write_site(tmp_path / "broken", "lab", include=["no-such-pack"], targets={}, hosts={})
    assert any("no-such-pack" in p for p in check(broken))


def test_a_lab_wait_reports_what_never_came(tmp_path: Path) -> None:
    with Lab(tmp_path) as lab, pytest.raises(LabError, match=r"the thing: not after .*Zero"):
        lab.wait(lambda: 1 / 0, "the thing", 0.5)


@pytest.mark.neo4j
def test_the_lab_daemon_serves_a_lab_site(tmp_path: Path, neo4j_settings) -> None:
    """`mendloop run` on a lab site: up with its token, no incidents, the site's packs."""
    site = write_site(
        tmp_path / "site",
        "lab",
        include=["linux-host"],
        targets={"host-1": {"components": ["process"], "hosts": ["host-1"]}},
        hosts={"host-1": {"mendloop_processes": {}}},
    )
    neo4j = neo4j_settings.neo4j_environ()
    with Lab(tmp_path / "lab") as lab:
        daemon = lab.daemon(site, neo4j)
        try:
            assert daemon.get("/v1/incidents") == []
            assert daemon.incidents("host-1") == []
            assert httpx.get(f"{daemon.url}/v1/incidents", timeout=10).status_code == 401
            assert "site lab" in daemon.proc.log_tail(20000)
        finally:
            daemon.close()
