"""``salon chat``: the Textual app, the ``--plain`` line mode and their asyncio connection."""
