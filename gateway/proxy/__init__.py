"""Streaming HTTP and WebSocket forwarding; the header rules are pure functions in `headers`."""
