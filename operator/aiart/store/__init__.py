"""The object store: its client, training runs, and the store gateway (with its
pure policy) through which models reach their own bucket.
"""
