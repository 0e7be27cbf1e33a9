"""The aiart command line: models, keys and store, through the REST API or a
manager's engine.
"""
