"""The Responses API adapter over the protocol-neutral core: the core's events for one
choice as ``response`` output items and stream events (the request side and the route
come later)."""
