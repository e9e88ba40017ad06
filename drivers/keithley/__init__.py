"""Keithley SourceMeters (2450, 2400) on pymeasure's instrument classes, over VISA.

``create_2450`` / ``create_2400`` (registry names ``keithley2450``,
``keithley2400``) build a ``KeithleySmuChannel``: host-timed galvanostatic,
potentiostatic, rest and staircase-sweep steps with software cutoffs and the
instrument's limit as the hard clamp. No impedance, no temperature.
"""

from drivers.keithley.smu import KeithleySmuChannel, SmuOptions, create_2400, create_2450

__all__ = ["KeithleySmuChannel", "SmuOptions", "create_2400", "create_2450"]
