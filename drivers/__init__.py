"""Instrument drivers: real instruments and simulated backends.

Every driver exposes ``labctl.channel.Channel``. Drivers depend only on the
step vocabulary (``labctl.steps``, ``labctl.limits``, ``labctl.clock``) and on
their transports.
"""
