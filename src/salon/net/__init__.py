"""The asyncio shell: the only layer that touches sockets and the event loop."""
