"""aiart: an AI Analytics Runtime for Docker Swarm.

The operator turns Docker config objects labelled ``aiart.model`` into routed,
watched model services. Pure modules (``spec``, ``render``, ``routing``,
``status``) hold the logic; adapters (``docker_adapter``, ``gateway``) hold
the I/O; ``reconcile`` and ``loop`` tie them together.
"""

__version__ = "0.1.0"
