"""bench/proxy_bench.py's pure helpers: wrk's figures at one connection, and the run length of the enforce route
against the gateway's touch_every (the bench itself is not run by CI)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the benches import each other by name

import proxy_bench as pb  # noqa: E402
import revocation_bench as rb  # noqa: E402

from gateway.config import parse  # noqa: E402

WRK_ONE_CONNECTION = """\
Running 3s test @ http://127.0.0.1:40000/1k.bin
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    80.12us   40.01us   2.10ms   95.00%
    Req/Sec    14.35k   456.78    15.00k    70.00%
  Latency Distribution
     50%   73.00us
     75%   80.00us
     90%   95.00us
     99%  234.00us
  42837 requests in 3.00s, 46.89MB read
Requests/sec:  14279.00
Transfer/sec:     15.63MB
"""


def test_a_one_connection_run_is_read_in_microseconds() -> None:
    result = pb.parse_wrk(WRK_ONE_CONNECTION)
    assert (result.rps, result.requests, result.non_2xx) == (14279.0, 42837, 0)
    assert result.p50_ms == pytest.approx(0.073)
    assert result.p99_ms == pytest.approx(0.234)


def test_the_queueing_floor_is_littles_law() -> None:
    """64 busy connections at 10,000 answers a second wait 6.4 ms on average, whatever serves them."""
    result = pb.parse_wrk(WRK_ONE_CONNECTION.replace("Requests/sec:  14279.00", "Requests/sec:  10000.00"))
    assert pb.queueing_ms(result, 64) == pytest.approx(6.4)
    assert pb.queueing_ms(result, 1) == pytest.approx(0.1)


def test_added_p50_is_the_difference_of_the_medians_in_microseconds() -> None:
    nginx = pb.parse_wrk(WRK_ONE_CONNECTION)
    gateway = pb.parse_wrk(WRK_ONE_CONNECTION.replace("50%   73.00us", "50%  252.00us"))
    assert pb.added_p50_us(gateway, nginx) == pytest.approx(179.0)
    assert pb.added_p50_us(nginx, nginx) == 0


@pytest.mark.parametrize(("duration", "measured"), [("10s", "10s"), ("50", "50"), ("51s", "50s"), ("1m", "50s")])
def test_the_enforce_route_is_measured_for_at_most_enforce_max_run(duration: str, measured: str) -> None:
    assert pb.enforce_duration(duration) == measured


def test_a_whole_enforce_run_stays_within_the_bindings_touch_every(monkeypatch: pytest.MonkeyPatch) -> None:
    """A binding older than touch_every is re-sealed on every request (wrk never takes the new cookie): the
    warm-up and the longest measured run, from one sealing, must end before it, and no revalidation may fall in."""
    monkeypatch.setenv("OKTA_API_TOKEN", "token")
    monkeypatch.setenv("GATEWAY_BINDING_KEYS", Fernet.generate_key().decode())
    conf = rb.gateway_conf(8080, 8081, 8082, cache_ttl=pb.ENFORCE_CACHE_TTL)
    settings = parse(tomllib.loads(conf))
    route = next(r for r in settings.routes.routes if r.name == "on")
    assert route.sessions is not None
    assert pb.duration_seconds(pb.WARMUP) + pb.ENFORCE_MAX_RUN < route.sessions.rules.touch_every
    assert settings.okta is not None
    assert settings.okta.cache.ttl == pb.ENFORCE_CACHE_TTL


def test_more_workers_take_the_redis_store_and_refuse_the_memory_one() -> None:
    assert pb.parse_args([]).store == "memory"
    assert pb.parse_args(["--workers", "2"]).store == "redis"
    assert pb.parse_args(["--store", "redis"]).store == "redis"
    with pytest.raises(SystemExit):
        pb.parse_args(["--workers", "2", "--store", "memory"])


def test_every_gateway_the_bench_starts_parses_with_more_workers_on_the_redis_store(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway refuses workers > 1 with the memory store: both kinds of gateway, given store_conf, are valid."""
    monkeypatch.setenv("OKTA_API_TOKEN", "token")
    monkeypatch.setenv("GATEWAY_BINDING_KEYS", Fernet.generate_key().decode())
    confs = {1: pb.gateway_conf(8080, 8081, 2, store=pb.store_conf(6379, 1)),
             2: pb.gateway_conf(8080, 8081, 2, "json", pb.store_conf(6379, 2)),
             3: rb.gateway_conf(8080, 8081, 8082, pb.store_conf(6379, 3), workers=2)}
    for db, conf in confs.items():
        settings = parse(tomllib.loads(conf))
        assert (settings.server.workers, settings.store.backend) == (2, "redis")
        assert tomllib.loads(conf)["store"]["url"] == f"redis://127.0.0.1:6379/{db}"
    assert pb.store_conf(None) == ""


def test_the_cpu_note_says_when_the_workers_figure_is_not_what_their_cores_give() -> None:
    assert "not what 2 cores give" in pb.cpu_note(2, 2, pinned=True)
    assert "not what" not in pb.cpu_note(2, 3, pinned=True)
    assert "not what" not in pb.cpu_note(1, 2, pinned=True)
    assert pb.cpu_note(1, 2, pinned=True).startswith("# the gateway (1 worker) had 2 CPUs")
