"""PalmSens potentiostats (EmStat4, Nexus, EmStat Pico) driven with MethodSCRIPT.

``methodscript`` holds the channel and the registry factories; ``script``
compiles steps to scripts; ``encoding``/``errors`` read and write the wire
formats; ``syntax`` parses scripts (for the emulator and the tests);
``models`` lists what each instrument can do; ``link`` is the serial line.
"""

from drivers.palmsens.methodscript import (
    MethodScriptChannel,
    create_emstat4,
    create_nexus,
    create_pico,
)

__all__ = ["MethodScriptChannel", "create_emstat4", "create_nexus", "create_pico"]
