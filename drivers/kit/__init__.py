"""The driver kit: what every instrument driver needs and should not rewrite.

* ``options``: a driver's lab-file options declared like protocol parameters
  (type, unit, default, range or choices, help) and parsed strictly, so a
  misspelled or out-of-range option is refused when the lab file loads;
* ``visa``: pyvisa's failures as ``labctl.channel``'s typed errors;
* ``pacing``: wait for a run time on the step's clock, watching its interrupt
  and handing the engine blocks while waiting;
* ``scpi``: the SCPI header/message parser and error queue of the emulators;
* ``testing``: pytest helpers (an emulator started for a test, its resource).

Modules are imported by what needs them (``from drivers.kit.visa import …``),
so a driver that has no VISA never imports pyvisa.
"""
