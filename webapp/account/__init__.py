"""The account's settings page (``views.bp``): the time zone the team's days and times
are shown in, which finance and admins may change."""
