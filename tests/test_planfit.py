"""Plan fit: what each plan would have cost on the team's usage -- hand-worked to the cent,
``custom`` plans, a history shorter than the window, and the page, the CSV and the
usage table agreeing."""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone
from decimal import Decimal as D

from webapp.giga import Plan
from webapp.services.planfit import Window, cost

STARTER = Plan("starter-pro", "Starter Pro", D(100), D(5), D(8), D(29))
PRO = Plan("pro", "Pro", D(500), D(20), D(12), D(99))
FREE = Plan("free", "Free", D(10), D(1), D(1), D(0))
MAX = Plan("max", "Max", "custom", "unlimited", D(24), "custom")
ODD = Plan("odd", "Odd", "custom", D(3), D(3), D(49))
T = datetime(2027, 3, 1, tzinfo=timezone.utc)


def test_one_period_hand_worked_to_the_cent():
    assert cost(STARTER, [D("141.20")]).words() == "$29 + $41.20 prepaid = $70.20"
    assert cost(PRO, [D("141.20")]).words() == "$99 + $0.00 prepaid = $99.00"
    assert cost(FREE, [D("141.20")]).words() == "$0 + $131.20 prepaid = $131.20"
    assert cost(STARTER, [D("100.00")]).total == D("29.00")  # exactly the credits


def test_three_stretches_each_with_the_price_and_credits_once():
    # 41.20 + 0 + 20.50 above Starter Pro's 100 a stretch; credits never carry over
    c = cost(STARTER, [D("141.20"), D("80.00"), D("120.50")])
    assert (c.price, c.prepaid, c.total) == (D(87), D("61.70"), D("148.70"))
    assert c.words() == "3 × $29 + $61.70 prepaid = $148.70"


def test_custom_plans_say_so_instead_of_a_figure():
    window = Window("last period", T, T, [D("141.20")], 0, False)
    assert cost(MAX, [D(1)]) is None and cost(ODD, [D(1)]) is None
    assert window.line(MAX) == "Max: price on request"
    assert window.line(ODD) == "Odd: credits are custom: ask sales"
    assert window.line(STARTER) == "Starter Pro: $29 + $41.20 prepaid = $70.20"


def test_a_history_shorter_than_the_window_says_how_much_is_missing():
    short = Window("last 90 days", T, T, [D(0), D(5), D(9)], 61, False)
    assert short.line(STARTER) == "Starter Pro: the history is 61 days short of it"
    assert short.cost(STARTER) is None
    floor = Window("last period", T, T, [D("141.20")], 0, True)
    assert floor.line(STARTER) == "Starter Pro: $29 + $41.20 prepaid = $70.20 or more"


def _card_lines(html: str) -> dict[str, list[str]]:
    cards = {}
    for card in re.findall(r'<li class="plan[^"]*">(.*?)</li>', html, re.S):
        name = re.search(r"<h3>(.*?)</h3>", card).group(1)
        cards[name] = [re.sub(r"\s+", " ", dd).strip()
                       for dd in re.findall(r'<dl class="plan-fit">.*?</dl>', card, re.S)
                       for dd in re.findall(r"<dd>(.*?)</dd>", dd)]
    return cards


def test_the_cards_the_csv_and_the_usage_table_agree(own_sandbox):
    """The sandbox's seeded month: the last period is told from its readings (its first
    reading's plan credits tell what was used before it), the 90 days are not."""
    app, client, _ = own_sandbox
    cards = _card_lines(client.get("/billing").get_data(as_text=True))
    table = client.get("/billing?range=last-period").get_data(as_text=True)
    total = re.search(r'id="usage-total">\$([\d,.]+)( to \$[\d,.]+)?<', table)
    used = D(total.group(1).replace(",", ""))
    # the table bounds the usage ("$63.74 to $100.00": a reset it cannot split): a floor
    more = " or more" if total.group(2) else ""
    over = max(D(0), used - 100)
    assert cards["Starter Pro"] == [f"$29 + ${over:,.2f} prepaid = ${29 + over:,.2f}{more}",
                                    "the history is 60 days short of it"]
    assert cards["Free"][0] == f"$0 + ${used - 10:,.2f} prepaid = ${used - 10:,.2f}{more}"
    assert cards["Pro"][0] == f"$99 + $0.00 prepaid = $99.00{more}"
    assert cards["Max"] == ["price on request", "price on request"]
    rows = list(csv.DictReader(io.StringIO(
        client.get("/billing/plan-fit.csv").get_data(as_text=True))))
    starter = next(r for r in rows if r["plan"] == "starter-pro"
                   and r["window"] == "last period")
    assert (starter["usage (USD)"], starter["prepaid (USD)"], starter["cost (USD)"]) == (
        f"{used:.2f}", f"{over:.2f}", f"{29 + over:.2f}")
    assert next(r for r in rows if r["plan"] == "max")["note"] == "price on request"
