"""The REST API under /api/v1: its app, its pure views and its OpenAPI
document.
"""
