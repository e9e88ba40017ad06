"""labctl: run electrochemistry instruments for solid-electrolyte labs.

The package is the core: the step vocabulary, the engine that runs protocols on
channels, the HDF5 run file, the analysis functions and the command line.
Instruments live in ``drivers``, test procedures in ``protocols``.
"""

__version__ = "0.1.0"
