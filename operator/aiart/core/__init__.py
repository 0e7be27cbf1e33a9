"""The pure core: the manifest schema, labels, status, plans, store layout and
the builders of services and routes. Imports nothing but the core and the
standard library (with pydantic and PyYAML); no I/O.
"""
