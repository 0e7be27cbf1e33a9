"""The catalog of deployments: its records and queries, kept in Docker configs
or MongoDB.
"""
