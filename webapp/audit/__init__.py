"""The audit trail page and its CSV: who tried what, and how it ended (``views.bp``)."""
