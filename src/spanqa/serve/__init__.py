"""``spanqa serve``: the engine behind an HTTP API on Ray Serve, batched by token count.

Nothing here imports Ray or FastAPI at module level (``spanqa --help`` stays instant):
``schema`` (request/response bodies), ``service`` (a replica's work, Ray-free), ``app`` (the
FastAPI app), ``metrics``, ``deployment`` (the Serve deployment) and ``server`` (start/stop).
"""
