"""Building images: runtime recipes, the image builder, and the facts read from
a pickle before any of it is loaded.
"""
