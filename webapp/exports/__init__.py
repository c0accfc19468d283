"""The history's CSV downloads for finance and admins (``views.bp``)."""
