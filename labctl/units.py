"""Lab units to SI, in one place, so every protocol converts the same way."""

from __future__ import annotations

MILLI = 1e-3
MICRO = 1e-6

SECONDS_PER_HOUR = 3600.0


def um_to_m(value_um: float) -> float:
    return value_um * MICRO


def um_to_cm(value_um: float) -> float:
    return value_um * 1e-4


def mv_to_v(value_mv: float) -> float:
    return value_mv * MILLI


def current_density_to_a(j_ma_cm2: float, area_cm2: float) -> float:
    """mA/cm² over an area in cm² -> A."""
    return j_ma_cm2 * MILLI * area_cm2


def areal_capacity_to_c(q_mah_cm2: float, area_cm2: float) -> float:
    """mAh/cm² over an area in cm² -> C."""
    return q_mah_cm2 * MILLI * SECONDS_PER_HOUR * area_cm2


def c_to_areal_capacity(q_c: float, area_cm2: float) -> float:
    """C over an area in cm² -> mAh/cm²."""
    return q_c / (MILLI * SECONDS_PER_HOUR * area_cm2)


def a_to_current_density(i_a: float, area_cm2: float) -> float:
    """A over an area in cm² -> mA/cm²."""
    return i_a / (MILLI * area_cm2)


def mv_per_s_to_v_per_s(rate_mv_s: float) -> float:
    return rate_mv_s * MILLI


def celsius_to_kelvin(t_c: float) -> float:
    return t_c + 273.15
