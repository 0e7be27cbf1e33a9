"""The activator: the program that holds requests for a scalable model at
zero replicas while the operator wakes it, and passes each on once
(docs/scaling.md). It knows the core's names and nothing else of aiart."""
