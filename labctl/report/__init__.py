"""Reports of a run file: the figures a paper shows, the results with their
uncertainties, warnings and conventions, and the run's metadata.

``labctl report RUN.h5 -o report.html|report.pdf|DIR`` (see :mod:`labctl.report.command`).
The run is read once into a :class:`~labctl.report.runview.RunView` (through
``labctl.storage`` and its guard for untrusted files, results through the same
replay as ``labctl analyze``); figures are drawn per protocol
(:mod:`labctl.report.figures`) with a generic fallback, and written by
:mod:`labctl.report.writers`. Application layer: the replay looks protocols up
by name.
"""
