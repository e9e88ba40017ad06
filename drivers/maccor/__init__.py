"""Maccor battery testers: a MacNet client (JSON-RPC over TCP, port 57570), direct mode."""
