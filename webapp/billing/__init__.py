"""The billing page: balance gauge, forecast, usage chart, plan cards, top-up and
plan change (``views.bp``)."""
