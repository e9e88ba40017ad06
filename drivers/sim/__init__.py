"""Simulated instruments: physics models of the cells behind the Channel interface.

``SimChannel(params, cell_type, clock)`` runs every step type on a model of a
SS|SE|SS, Li|SE|Li, Li|SE|SS, Li|SE|Cu or Li|SE|cathode cell in virtual time;
``SimParams`` holds the truth (every model constant, with unit, range and
help), ``CELL_TYPES`` names the cell types.
"""

from drivers.sim.channel import SimChannel
from drivers.sim.params import CELL_TYPES, ParamSpec, SimParams

__all__ = ["CELL_TYPES", "ParamSpec", "SimChannel", "SimParams"]
