"""Arbin battery testers: a CTI client of MITS Pro (binary over TCP, port 9031), labctl's own step logic."""
