"""salon: a self-hosted chat server that speaks IRC, with a terminal client."""

__version__ = "0.1.0"
