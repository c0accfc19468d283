"""Sign-in and sign-out, with throttling that cannot lock an owner out (``views.bp``)."""
