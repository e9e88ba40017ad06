"""Keysight instruments: the E4980A precision LCR meter (impedance ≥ 20 Hz)."""
