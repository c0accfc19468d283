"""The top-up amount: every bad input gets a message by the field and no upstream call."""
import re
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webapp.services.amount import AmountError, parse_amount

MIN, MAX = Decimal(5), Decimal(10000)


@pytest.mark.parametrize("text,message", [
    ("", "Enter an amount."),
    ("   ", "Enter an amount."),
    ("0", "above zero"),
    ("0.00", "above zero"),
    ("-5", "positive"),
    ("−5", "positive"),
    ("abc", "as a number"),
    ("12abc", "as a number"),
    ("NaN", "as a number"),
    ("nan", "as a number"),
    ("Infinity", "as a number"),
    ("-Infinity", "positive"),
    ("inf", "as a number"),
    ("1e3", "no exponents"),
    ("1E+3", "no exponents"),
    ("1e999999", "no exponents"),
    ("5e-1", "no exponents"),
    ("10.001", "two decimal places"),
    ("10.999", "two decimal places"),
    ("4.99", "smallest top-up is $5.00"),
    ("10000.01", "largest top-up is $10,000.00"),
    ("99999999999999999999", "largest"),
    ("١٢", "as a number"),           # Arabic-Indic digits: Decimal would accept them
    ("５０", "as a number"),          # full-width digits
    ("1,00", "as a number"),
    ("12.5.1", "as a number"),
    ("0x10", "as a number"),
    ("1_000", "as a number"),
    ("9" * 40, "far too long"),
])
def test_bad_amounts_have_clear_messages(text, message):
    with pytest.raises(AmountError) as info:
        parse_amount(text, MIN, MAX)
    assert message in str(info.value)


@pytest.mark.parametrize("text,amount", [
    ("5", "5.00"), ("5.00", "5.00"), ("10000", "10000.00"), ("10,000", "10000.00"),
    ("$50", "50.00"), (" 12.5 ", "12.50"), ("1,234.56", "1234.56"), ("50.", "50.00"),
])
def test_good_amounts(text, amount):
    assert parse_amount(text, MIN, MAX) == Decimal(amount)


# -- through the page: a message by the field, what was typed kept, nothing upstream ---

@pytest.mark.parametrize("text", ["", "0", "-5", "abc", "NaN", "Infinity", "1e3", "10.001",
                                  "4.99", "10000.01"])
def test_bad_amount_on_the_page(client, auth, sandbox, text):
    auth.login("finance")
    before = sandbox.api_calls("/api/billing/recharge")
    resp = client.post("/billing/topup", data={"amount": text, "nonce": "n" * 24})
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert 'id="amount-error"' in html and 'aria-invalid="true"' in html
    assert f'value="{text}"' in html if text else 'name="amount"' in html
    assert sandbox.api_calls("/api/billing/recharge") == before


def test_range_is_stated_before_typing(client, auth):
    auth.login("finance")
    html = client.get("/billing").get_data(as_text=True)
    assert "From $5.00 to $10,000.00" in html
    assert 'aria-describedby="amount-hint"' in html


def test_range_comes_from_settings(tmp_path, sandbox):
    from .conftest import AuthActions, make_app
    app = make_app(tmp_path, SANDBOX=sandbox, RECHARGE_MIN="20", RECHARGE_MAX="250.50")
    client = app.test_client()
    AuthActions(client).login("finance")
    assert "From $20.00 to $250.50" in client.get("/billing").get_data(as_text=True)
    resp = client.post("/billing/topup", data={"amount": "19.99", "nonce": "n" * 24})
    assert "smallest top-up is $20.00" in resp.get_data(as_text=True)


@pytest.fixture
def roomy_client(tmp_path, sandbox):
    """A finance user's client with the per-user checkout limit out of the way."""
    from .conftest import AuthActions, make_app
    client = make_app(tmp_path, SANDBOX=sandbox, ACTIONS_PER_MINUTE="10000",
                      TYPOS_PER_MINUTE="10000").test_client()
    AuthActions(client).login("finance")
    return client


# -- properties: nothing invalid is ever accepted, nothing valid is refused -------------

_VALID = re.compile(r"\$?\s*(\d+|\d{1,3}(,\d{3})+)(\.\d{0,2})?", re.ASCII)


@given(st.text(max_size=20))
def test_property_accepted_text_is_a_valid_amount(text):
    try:
        amount = parse_amount(text, MIN, MAX)
    except AmountError:
        return
    assert _VALID.fullmatch(text.strip())
    assert amount.is_finite() and MIN <= amount <= MAX
    assert amount.as_tuple().exponent == -2


@given(st.decimals(min_value=MIN, max_value=MAX, places=2, allow_nan=False,
                   allow_infinity=False))
def test_property_every_valid_amount_is_accepted(amount):
    assert parse_amount(format(amount, "f"), MIN, MAX) == amount
    assert parse_amount(f"{amount:,.2f}", MIN, MAX) == amount


@given(st.decimals(allow_nan=True, allow_infinity=True))
def test_property_out_of_range_or_odd_decimals_refused(value):
    text = str(value)
    try:
        amount = parse_amount(text, MIN, MAX)
    except AmountError:
        return
    assert value.is_finite() and MIN <= value <= MAX and value == amount


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=12), st.sampled_from(
    ["NaN", "1e3", "-1", "0", "4.999", "5", "10000", "10000.01", "1,000.5", "٣"])))
def test_property_only_valid_amounts_reach_upstream(roomy_client, sandbox, text):
    """Through the real form: upstream sees a request exactly when the amount is valid,
    and then exactly that amount, as a canonical JSON number."""
    from webapp.giga.client import canonical_amount
    client = roomy_client
    sandbox.calls.clear()
    try:
        expected = parse_amount(text, MIN, MAX)
    except AmountError:
        expected = None
    import secrets
    resp = client.post("/billing/topup", data={"amount": text, "nonce": secrets.token_hex(12)})
    sent = sandbox.api_calls("/api/billing/recharge")
    if expected is None:
        assert resp.status_code == 422 and sent == 0
    else:
        assert resp.status_code == 303 and sent == 1
        checkout_id = resp.headers["Location"].rsplit("/", 1)[1]
        assert sandbox.state.checkout(checkout_id)["amount"] == canonical_amount(expected)
