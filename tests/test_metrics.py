"""/metrics: Prometheus text, bearer token only, the whole deployment's figures."""
import pytest
from prometheus_client.parser import text_string_to_metric_families

from webapp.gateway.redis_store import RedisStore
from webapp.services.arrivals import settle

from .conftest import AuthActions, make_app

#: a strong token, fixed so that test ids are the same in every worker
TOKEN = "5c1e9a07d3b84f2e96a0c7d1e4b8f3a2d9c6e0b7a4f1d8c3e6b9a2f5d0c7e4b1"


def _scrape(client, token=TOKEN):
    resp = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.status_code
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.get_data(as_text=True))
            for s in family.samples}


def test_metrics_are_404_without_a_token_setting(client):
    assert client.get("/metrics").status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_metrics_need_the_bearer_token(tmp_path, sandbox, header):
    app = make_app(tmp_path, SANDBOX=sandbox, METRICS_TOKEN=TOKEN)
    headers = {"Authorization": header} if header else {}
    assert app.test_client().get("/metrics", headers=headers).status_code == 401


def test_metrics_show_balances_calls_cache_budget_breaker(tmp_path, sandbox):
    app = make_app(tmp_path, SANDBOX=sandbox, METRICS_TOKEN=TOKEN)
    client = app.test_client()
    AuthActions(client).login("viewer")
    client.get("/billing")
    client.get("/billing")
    settle(app)  # the page's reading is recorded after the page
    m = _scrape(client)
    assert m[("giga_balance_usd", (("kind", "total"),))] == 124.5
    assert m[("giga_balance_usd", (("kind", "plan_credits"),))] == 74.5
    assert m[("giga_upstream_calls_total", (("outcome", "ok"),))] == 2  # billing and plans
    assert m[("giga_cache_requests_total", (("result", "hit"),))] == 1
    assert m[("giga_upstream_budget_remaining", ())] == 28
    assert m[("giga_breaker_state", (("state", "closed"),))] == 1
    assert ("giga_period_end_timestamp_seconds", ()) in m


def test_with_redis_the_figures_are_the_whole_deployments(tmp_path, sandbox, redis_server):
    apps = [make_app(tmp_path / str(i), SANDBOX=sandbox, METRICS_TOKEN=TOKEN,
                     STORE=RedisStore(redis_server.url), BILLING_CACHE_TTL="0",
                     DATABASE_URL=f"sqlite:///{tmp_path / 'shared.db'}") for i in range(2)]
    for app in apps:
        client = app.test_client()
        AuthActions(client).login("viewer")
        client.get("/billing")
    m = _scrape(apps[0].test_client())
    calls = m[("giga_upstream_calls_total", (("outcome", "ok"),))]
    assert calls == 3  # two billing reads (TTL 0) and one plans read, across both processes
    assert m[("giga_upstream_budget_remaining", ())] == 27


@pytest.mark.parametrize("weak", ["x", "metrics-token-123456", "m" * 64, "changeme" * 8])
def test_a_weak_metrics_token_stops_start_up(tmp_path, sandbox, weak):
    from webapp import ConfigError
    with pytest.raises(ConfigError, match="METRICS_TOKEN is too weak"):
        make_app(tmp_path, SANDBOX=sandbox, METRICS_TOKEN=weak)


def test_wrong_tokens_are_limited_per_address_and_never_refuse_the_right_one(tmp_path, sandbox):
    client = make_app(tmp_path, SANDBOX=sandbox, METRICS_TOKEN=TOKEN).test_client()

    def scrape(token, address):
        return client.get("/metrics", headers={"Authorization": f"Bearer {token}"},
                          environ_base={"REMOTE_ADDR": address})
    assert [scrape(f"guess{i}", "10.9.0.1").status_code for i in range(10)] == [401] * 10
    refused = scrape("guess10", "10.9.0.1")  # that address's wrong tokens: refused a minute
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    # the scraper on the same address (a shared NAT, or a forged address) scrapes on
    assert [scrape(TOKEN, "10.9.0.1").status_code for _ in range(3)] == [200] * 3
    assert scrape("guess11", "10.9.0.2").status_code == 401  # another address: its own count


def test_forged_forwarded_addresses_cannot_lock_the_scraper_out(tmp_path, sandbox):
    """Behind a proxy (TRUST_PROXY), wrong tokens "from" the scraper's address refuse only
    wrong tokens."""
    client = make_app(tmp_path, SANDBOX=sandbox, METRICS_TOKEN=TOKEN,
                      TRUST_PROXY="1").test_client()
    scraper = {"X-Forwarded-For": "10.9.0.5"}
    for i in range(15):
        client.get("/metrics", headers={**scraper, "Authorization": f"Bearer guess{i}"})
    assert client.get("/metrics", headers={**scraper, "Authorization": f"Bearer {TOKEN}"}
                      ).status_code == 200


def test_with_redis_down_the_deployments_figures_are_left_out_not_reset(
        tmp_path, sandbox, redis_server):
    app = make_app(tmp_path, SANDBOX=sandbox, METRICS_TOKEN=TOKEN,
                   STORE=RedisStore(redis_server.url))
    client = app.test_client()
    AuthActions(client).login("viewer")
    client.get("/billing")
    settle(app)
    m = _scrape(client)
    assert m[("giga_shared_store_up", ())] == 1
    assert m[("giga_upstream_calls_total", (("outcome", "ok"),))] == 2
    redis_server.stop()
    m = _scrape(client)
    assert m[("giga_shared_store_up", ())] == 0
    assert not any(name.startswith(("giga_upstream", "giga_cache", "giga_breaker"))
                   for name, _ in m)
    assert m[("giga_balance_usd", (("kind", "total"),))] == 124.5  # from the database still
