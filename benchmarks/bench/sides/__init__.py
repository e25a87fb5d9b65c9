"""The two sides, one module each, so that a client process imports only its own side.

Each module has ``make_trigger(run_id, poll, timeout)`` and ``async warm_up(host)``: the one-time costs that a
long-lived triggerer has paid long before the measured loop (``host`` is the connection's host).
"""
