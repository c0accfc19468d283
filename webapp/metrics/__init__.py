"""/metrics for Prometheus: the whole deployment's figures (``views.bp``)."""
