"""Receiving 8x8's pushed events (webhooks): virtual number updates and call session summaries.

Data flow: flags (config.py) -> HTTP listener (listener.py) -> WSGI receiver (receiver.py)
-> decoded events (events.py) -> remembered state and its metrics (state.py), which /metrics
serves next to the polled inventory.
"""
