"""The Alerts page: the rules an admin sets, where alerts go, what was sent
(``views.bp``); ``receiver`` is a webhook receiver to try them with."""
