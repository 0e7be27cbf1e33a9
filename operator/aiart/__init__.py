"""aiart: an AI Analytics Runtime for Docker Swarm.

The operator turns Docker config objects labelled ``aiart.model`` into routed,
watched model services. The package is cut into wings (docs/architecture.md):
``core`` holds the pure logic; ``engine``, ``store``, ``catalog``, ``auth`` and
``build`` the parts that talk to the world; ``control`` (the operator), ``api``
and ``cli`` are the programs.
"""

__version__ = "0.1.0"
