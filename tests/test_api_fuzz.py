"""An OpenAPI fuzzer (schemathesis) against the running API with a valid token: whatever
it sends, no server error, and every reply -- status, content type, body -- is one the
published document allows."""
from __future__ import annotations

import os
import re
from itertools import product
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CHECKS
from schemathesis.generation import GenerationMode

from .conftest import AuthActions, make_app

#: the fuzz run's token, made by the fixture
BEARER: dict[str, str] = {}
#: examples per endpoint and kind of input (FUZZ_EXAMPLES=500 for a longer hunt)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
#: what the document promises: no 5xx, documented statuses, types and bodies
PROMISES = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
            "response_schema_conformance")


@pytest.fixture
def api_schema(tmp_path, sandbox):
    from webapp.giga.client import parse_billing
    from webapp.services.history.seed import seed

    app = make_app(tmp_path, SANDBOX=sandbox, API_REQUESTS_PER_MINUTE="100000",
                   API_REQUESTS_PER_HOUR="100000", API_FAILURES_PER_MINUTE="100000")
    with app.app_context():
        seed(parse_billing({"billing": sandbox.state.billing()}), Decimal(100),
             datetime.now(timezone.utc) - timedelta(minutes=1))
    client = app.test_client()
    AuthActions(client).login("finance")
    client.get("/billing")
    made = client.post("/settings/tokens", data={
        "name": "fuzz", "scopes": ["balance:read", "usage:read", "audit:read"], "days": "7"})
    BEARER["token"] = re.search(r'value="(wgb_[^"]+)"', made.get_data(as_text=True)).group(1)
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


def test_the_fuzzer_finds_no_server_error_and_no_undocumented_reply(api_schema):
    checks = [c for c in CHECKS.get_all() if c.__name__ in PROMISES]
    assert len(checks) == len(PROMISES)
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 7
    statuses = set()
    for operation, mode in product(operations, GenerationMode):  # valid and invalid input

        @given(operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def answers_as_documented(case):
            # a WSGI call is not decompressed on the way back, as an HTTP client's is
            answer = case.call_and_validate(headers={
                "Authorization": f"Bearer {BEARER['token']}", "Accept-Encoding": "identity"},
                checks=checks)
            statuses.add(answer.status_code)

        answers_as_documented()
    assert {200, 422} <= statuses  # it did send good and bad input, and got both answers
