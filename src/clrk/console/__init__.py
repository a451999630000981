"""The web console: pages served by the API server at ``/console`` that show the agents,
their invocations and trace trees, what egress was allowed or refused, and the spend.
The pages read the console API (``/console/api``, :mod:`clrk.console.api`), which reads
the telemetry store's aggregates (:mod:`clrk.console.queries`) and the stored resources;
a session cookie (:mod:`clrk.console.sessions`) gates every route but the login page."""
