"""Command handlers. Each is ``handler(server, client, msg, rb)``; the table is in commands.py."""
