"""Who may use the dashboard: the admins' Users page (``views.bp``)."""
