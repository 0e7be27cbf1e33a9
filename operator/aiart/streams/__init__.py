"""Model streams: MQTT messages scored by a model, answers published
(docs/streams.md). ``messages`` is the pure part; ``bridge`` the service."""
