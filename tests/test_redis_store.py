"""The Redis store on a real ``redis-server``: atomic under races, JSON only,
and a fault like any other when Redis is down or slow."""
import secrets
import json
import threading
import time
from decimal import Decimal

import pytest
import redis

from webapp.clock import Clock
from webapp.gateway import BillingGateway, make_store
from webapp.gateway.redis_store import RedisStore
from webapp.giga import GigaClient
from webapp.settings import ConfigError, load_settings

from .support.faultserver import healthy


def _gateway(store, server, **kw):
    client = GigaClient(server.url, "k", connect_timeout=1, total_timeout=3)
    return BillingGateway(client, store, get_retries=0, **kw)


def _hammer(n, fn):
    out = []
    threads = [threading.Thread(target=lambda: out.append(fn())) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


class RoundTrips:
    """Counts this process's round trips to Redis: each is one send on a connection (a
    command, a script, or a pipeline of commands)."""

    def __init__(self, monkeypatch):
        self.count = 0
        send = redis.connection.AbstractConnection.send_packed_command

        def counted(connection, command, check_health=True):
            self.count += 1
            return send(connection, command, check_health)
        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)


def test_a_read_costs_two_round_trips_before_the_call_and_one_after(redis_server, fault_server,
                                                                  monkeypatch):
    """The bookkeeping of one read -- the cache, the single-flight lock, the cool-down,
    the breaker and the budget, the figures for /metrics, the reading stored and the lock
    let go -- is two round trips to Redis before the upstream call and one after; a page
    whose balance and plans are both cached is one."""
    store = RedisStore(redis_server.url)
    gw = _gateway(store, fault_server)
    gw.balance_and_plans(time.monotonic() + 3)  # the connection open, the scripts loaded
    store.heartbeat(force=True)  # not due again for a while
    trips = RoundTrips(monkeypatch)
    before = []

    def upstream(method, path, body):
        before.append(trips.count)
        return healthy(method, path, body)
    fault_server.handler = upstream

    def read(fn):
        gw.forget_billing()
        trips.count = 0
        before.clear()
        fn()
        assert before == [2] and trips.count - before[0] == 1, (before, trips.count)
    read(lambda: gw.billing(time.monotonic() + 3))
    read(lambda: gw.balance_and_plans(time.monotonic() + 3))  # the plans are cached

    trips.count = 0
    before.clear()
    gw.balance_and_plans(time.monotonic() + 3)
    assert trips.count == 1 and not before


def test_no_31st_call_slips_through_a_race_between_processes(redis_server):
    """Two stores (two processes) racing 40 threads each for a budget of 30."""
    stores = [RedisStore(redis_server.url), RedisStore(redis_server.url)]
    results = _hammer(80, lambda: stores[threading.get_ident() % 2].take("budget", 30, 60))
    assert sum(taken for taken, _ in results) == 30
    refused = [wait for taken, wait in results if not taken]
    assert all(0 < wait <= 60 for wait in refused)


def test_no_breaker_failure_is_lost(redis_server):
    stores = [RedisStore(redis_server.url), RedisStore(redis_server.url)]
    _hammer(50, lambda: stores[threading.get_ident() % 2].incr("failures", 60))
    assert stores[0].get("failures") == "50"
    assert 59 < stores[1].remaining("failures") <= 60


def test_only_one_claim_wins(redis_server):
    stores = [RedisStore(redis_server.url) for _ in range(3)]
    wins = _hammer(30, lambda: stores[threading.get_ident() % 3].claim("lock", 5))
    assert wins.count(True) == 1


def test_readings_are_json_with_money_as_strings(redis_server, fault_server):
    gw = _gateway(make_store(redis_server.url), fault_server)
    gw.billing(time.monotonic() + 3)
    with redis_server.client() as r:
        [key] = r.keys("giga:*:billing")
        doc = json.loads(r.get(key))
    assert doc["value"]["totalBalance"] == "124.5"
    assert doc["value"]["planCreditsRemaining"] == "74.5"


def test_a_planted_pickle_is_never_run_and_the_page_reads_upstream(redis_server, fault_server):
    store = make_store(redis_server.url)
    gw = _gateway(store, fault_server)
    gw.billing(time.monotonic() + 3)
    with redis_server.client() as r:
        [key] = r.keys("giga:*:billing")
        # what pickle.dumps(os.system("touch /tmp/pwned")) would look like to a loader
        r.set(key, b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system")
    reading = gw.billing(time.monotonic() + 3)
    assert reading.value.total_balance == Decimal("124.5")
    assert fault_server.count("/api/billing") == 2


def test_redis_down_keeps_answering_from_local_state_and_recovers(redis_server, fault_server):
    store = RedisStore(redis_server.url, recheck=0.3)
    gw = _gateway(store, fault_server, billing_ttl=600)
    first = gw.billing(time.monotonic() + 3)
    redis_server.kill()
    started = time.monotonic()
    again = gw.billing(time.monotonic() + 3)  # the mirrored reading, not an error
    assert again.value == first.value and time.monotonic() - started < 1.5
    assert not store.available and fault_server.count("/api/billing") == 1
    redis_server.start()
    time.sleep(0.4)
    gw.forget_billing()
    gw.billing(time.monotonic() + 3)
    assert store.available
    with redis_server.client() as r:
        assert r.keys("giga:*:billing")


def test_redis_down_limits_each_process_to_its_share_of_the_budget(redis_server):
    stores = [RedisStore(redis_server.url) for _ in range(6)]
    for store in stores:
        store.get("anything")  # each process says it is alive
    stores[0].heartbeat(force=True)  # see the others at once
    assert stores[0].processes == 6
    redis_server.kill()
    taken = [stores[0].take("budget", 30, 60)[0] for _ in range(30)]
    assert taken.count(True) == 5


def test_a_process_that_has_seen_few_others_assumes_several(redis_server):
    store = RedisStore(redis_server.url)
    store.get("anything")
    assert store.processes == 4  # alone so far, but only just started
    redis_server.kill()
    assert [store.take("budget", 30, 60)[0] for _ in range(30)].count(True) == 7


def test_slow_redis_is_given_up_on_quickly(redis_server):
    store = RedisStore(redis_server.url, op_timeout=0.3)
    store.set("k", "v", 60)
    blocker = threading.Thread(target=lambda: redis_server.client().execute_command(
        "DEBUG", "SLEEP", "2"))
    blocker.start()
    time.sleep(0.1)
    started = time.monotonic()
    assert store.get("k") == "v"  # from the local mirror
    assert time.monotonic() - started < 1.0
    blocker.join()


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis://", "redis://h:port/0",
                                 "redis://h:6379/zero", "127.0.0.1:6379"])
def test_a_bad_redis_url_stops_start_up_naming_it(url):
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load_settings({"REDIS_URL": url, "GIGA_API_KEY": "k", "SECRET_KEY": secrets.token_hex(32)},
                      {"TESTING": True})


def test_the_url_password_never_shows(redis_server):
    store = make_store(f"redis://:hunter2-secret@127.0.0.1:{redis_server.port}/0", clock=Clock())
    assert "hunter2" not in repr(store)
    with pytest.raises(ConfigError) as info:
        load_settings({"REDIS_URL": "http://:hunter2-secret@h", "GIGA_API_KEY": "k"},
                      {"TESTING": True})
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("planted", [
    {"planCreditsRemaining": "74.505"},                    # finer than a cent
    {"totalBalance": "1e12"},                               # beyond any account
    {"currentPeriodEnd": "2020-01-01T00:00:00+00:00"},      # ends before it starts
    {"prepaidBalance": "plenty"},                           # a word where money belongs
])
def test_a_cached_balance_passes_the_same_checks_as_the_apis(redis_server, fault_server,
                                                             planted):
    """One decoder: a value in Redis that the client would refuse from the API is
    ignored, and the balance is read upstream again."""
    gw = _gateway(make_store(redis_server.url), fault_server)
    gw.billing(time.monotonic() + 3)
    with redis_server.client() as r:
        [key] = r.keys("giga:*:billing")
        doc = json.loads(r.get(key))
        doc["value"].update(planted)
        r.set(key, json.dumps(doc))
    reading = gw.billing(time.monotonic() + 3)
    assert reading.value.plan_credits_remaining == Decimal("74.5")
    assert fault_server.count("/api/billing") == 2
