"""The API's documents as marshmallow schemas: each JSON reply is dumped through its
schema (a field the schema does not name never goes out), and the OpenAPI document at
``/api/v1/openapi.json`` is generated from the same schemas, so the two cannot drift.
Money is a decimal string, times RFC 3339 UTC strings (formatted by ``lists``)."""
from __future__ import annotations

from marshmallow import Schema, fields
from marshmallow.validate import OneOf, Range

Money = fields.String  # "12.34": a decimal string, never a float
Time = fields.String   # "2026-12-02T18:10:00Z"


def _money(description: str, **kw):
    return Money(metadata={"description": description, "example": "12.34"}, **kw)


def _time(description: str, **kw):
    return Time(metadata={"description": description, "format": "date-time",
                          "example": "2026-12-02T18:10:00Z"}, **kw)


class ErrorDetail(Schema):
    type = fields.String(required=True, metadata={
        "description": "invalid_token, token_expired, token_revoked, insufficient_scope, "
                       "invalid_parameter, rate_limited, no_reading, not_found, ..."})
    message = fields.String(required=True)


class Refusal(Schema):
    """Every error: what went wrong, in words, and the request's ID."""
    error = fields.Nested(ErrorDetail, required=True)
    request_id = fields.String(required=True)


class Page(Schema):
    has_more = fields.Boolean(required=True)
    next_page = fields.String(allow_none=True, required=True, metadata={
        "description": "pass as next_page to get what follows; null on the last page"})


# -- balance ---------------------------------------------------------------------------

class Plan(Schema):
    id = fields.String(required=True)
    name = fields.String(allow_none=True, required=True)


class Pools(Schema):
    plan_credits = _money("plan credits left this period", required=True)
    prepaid = _money("prepaid credit left", required=True)


class Period(Schema):
    start = _time("the period's start", required=True)
    end = _time("the period's end", required=True)


class Balance(Schema):
    plan = fields.Nested(Plan, required=True)
    pools = fields.Nested(Pools, required=True)
    total = _money("plan credits and prepaid together", required=True)
    currency = fields.String(required=True)
    period = fields.Nested(Period, required=True)
    read_at = _time("when the dashboard read this figure from WithGiga", required=True)
    age_seconds = fields.Integer(required=True)
    stale = fields.Boolean(required=True, metadata={
        "description": "kept because the last read failed, or older than STALE_MAX_AGE"})
    source = fields.String(required=True, metadata={"description": "cache or history"})


class Reading(Schema):
    first_seen_at = _time("first read with these figures", required=True)
    last_seen_at = _time("last read with these figures", required=True)
    plan = fields.String(required=True)
    plan_credits = _money("plan credits left", required=True)
    prepaid = _money("prepaid credit left", required=True)
    total = _money("both together", required=True)
    period_start = _time("the period's start", required=True)
    period_end = _time("the period's end", required=True)


class Readings(Page):
    data = fields.List(fields.Nested(Reading), required=True)


# -- the trail -------------------------------------------------------------------------

class Entry(Schema):
    id = fields.Integer(required=True)
    at = _time("when it was written", required=True)
    user = fields.String(required=True)
    role = fields.String(required=True)
    action = fields.String(required=True)
    amount = _money("a top-up's amount", allow_none=True, required=True)
    amount_typed = fields.String(allow_none=True, required=True)
    plan_from = fields.String(allow_none=True, required=True)
    plan_from_name = fields.String(allow_none=True, required=True)
    plan_to = fields.String(allow_none=True, required=True)
    plan_to_name = fields.String(allow_none=True, required=True)
    subject = fields.String(allow_none=True, required=True)
    role_from = fields.String(allow_none=True, required=True)
    role_to = fields.String(allow_none=True, required=True)
    outcome = fields.String(required=True)
    repeats = fields.Integer(allow_none=True, required=True)
    detail = fields.String(allow_none=True, required=True)
    request_id = fields.String(allow_none=True, required=True)
    status = fields.String(allow_none=True, required=True, metadata={
        "description": "a checkout's reconciled status: credited, plan changed, not yet "
                       "seen, not seen — check with WithGiga, cancelled at checkout"})
    seen_at = _time("when a reading showed it", allow_none=True, required=True)


class Entries(Page):
    data = fields.List(fields.Nested(Entry), required=True)


# -- usage -----------------------------------------------------------------------------

class Bucket(Schema):
    date = fields.String(metadata={"description": "the day, in the account's zone (daily)"})
    starts_at = _time("the bucket's first instant", required=True)
    ends_at = _time("the instant after its last", required=True)
    usage = _money("usage the readings tell; null without readings", allow_none=True,
                   required=True)
    usage_at_most = _money("the most it can have been; null when unbounded",
                           allow_none=True, required=True)
    plan_credits_used = _money("the part of usage that drew plan credits (usage draws them "
                               "first); null without readings", allow_none=True, required=True)
    prepaid_used = _money("the part of usage that drew prepaid credit; null without readings",
                          allow_none=True, required=True)
    top_ups = _money("top-ups credited", required=True)
    closing_balance = _money("the newest reading's total", allow_none=True, required=True)
    readings = fields.Boolean(required=True)
    unknown = fields.Boolean(required=True, metadata={
        "description": "some usage in it cannot be told (see notes)"})
    notes = fields.List(fields.String(), required=True)
    incomplete = fields.Boolean(required=True, metadata={
        "description": "the bucket is not over yet (today, this hour)"})


class Gap(Schema):
    starts_at = _time("the last reading before it", required=True)
    ends_at = _time("the first reading after it", required=True)
    usage = _money("usage over the stretch", allow_none=True, required=True)
    top_ups = _money("top-ups credited in it", required=True)
    unknown = fields.Boolean(required=True)
    kind = fields.String(required=True)
    note = fields.String(allow_none=True, required=True)


class Totals(Schema):
    usage = _money("the page's buckets and stretches together", required=True)
    unknown = fields.Boolean(required=True)


class Usage(Page):
    zone = fields.String(required=True, metadata={"description": "the zone of the buckets"})
    zone_label = fields.String()
    account_zone = fields.String()
    starting_at = fields.String(required=True)
    ending_at = fields.String(required=True)
    data = fields.List(fields.Nested(Bucket), required=True)
    stretches_without_readings = fields.List(fields.Nested(Gap), required=True)
    page_totals = fields.Nested(Totals, required=True)


class TokenSelf(Schema):
    name = fields.String(required=True)
    token = fields.String(required=True, metadata={"description": "as listed: wgb_ab12…x9"})
    scopes = fields.List(fields.String(), required=True)
    rights = fields.List(fields.String(), required=True, metadata={
        "description": "the scopes the owner's role allows now"})
    team = fields.Boolean(required=True)
    owner = fields.String(allow_none=True, required=True)
    owner_role = fields.String(allow_none=True, required=True)
    created_at = _time("made", required=True)
    expires_at = _time("stops working", required=True)


# -- the parameters (documented; ``lists`` checks them and names a bad one) -------------

class ListArgs(Schema):
    limit = fields.Integer(validate=Range(1, 1000), metadata={
        "description": "items a page (default 100)"})
    next_page = fields.String(metadata={"description": "the cursor a page gave"})
    format = fields.String(validate=OneOf(("json", "csv")), metadata={
        "description": "json (default) or csv: the whole list, streamed"})


class HistoryArgs(ListArgs):
    starting_at = fields.String(metadata={"format": "date-time", "description":
                                          "RFC 3339: readings seen since"})
    ending_at = fields.String(metadata={"format": "date-time", "description":
                                        "RFC 3339: readings first seen before"})


class AuditArgs(ListArgs):
    after = fields.Integer(validate=Range(0, 2**31 - 1), metadata={
        "description": "an entry id: the entries after it"})


class DailyArgs(ListArgs):
    limit = fields.Integer(validate=Range(1, 400), metadata={
        "description": "days a page (default 31)"})
    starting_at = fields.String(metadata={"format": "date", "description":
                                          "a day of the account's zone (default: 29 days "
                                          "before ending_at)"})
    ending_at = fields.String(metadata={"format": "date", "description":
                                        "a day, included (default today)"})


class HourlyArgs(ListArgs):
    limit = fields.Integer(validate=Range(1, 744), metadata={
        "description": "hours a page (default 168)"})
    starting_at = fields.String(metadata={"format": "date-time", "description":
                                          "RFC 3339 (default: 24 hours before ending_at)"})
    ending_at = fields.String(metadata={"format": "date-time", "description":
                                        "RFC 3339 (default: the end of this hour)"})
