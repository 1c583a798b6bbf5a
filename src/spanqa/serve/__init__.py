"""``spanqa serve``: the engine behind an HTTP API, spanqa's own ingress in front of Ray Serve
replicas batched by token count.

Nothing here imports Ray or FastAPI at module level (``spanqa --help`` stays instant). The
ingress: ``app`` (FastAPI), ``ingress``, ``admission``, ``plan``, ``problem``, ``backend``; the
replicas: ``deployment`` (the Serve deployment), ``service`` (Ray-free); ``schema``, ``metrics``;
``server`` (start, drain, stop).
"""
