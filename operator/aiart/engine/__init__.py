"""The Docker Engine: the adapter every program talks to it through, and the
proxy (with its pure policy) that narrows it for the auth service and the
API.
"""
