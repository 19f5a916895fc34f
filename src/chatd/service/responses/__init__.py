"""The Responses API adapter over the protocol-neutral core (its skeleton:
service/protocol_service.py): the conversation rebuilt from stored responses, items in,
the core's events for one choice as ``response`` output items and stream events out,
relayed in either wire API."""
