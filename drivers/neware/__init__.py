"""Neware BTS battery testers: a client of the BTS server (XML over TCP, port 502)."""
