"""Wire-level emulators: real command sets over real transports on this machine.

Each emulator speaks an instrument's own protocol (SCPI, MethodSCRIPT, the
Espec ASCII protocol, Modbus) over a loopback TCP socket or a pseudo-terminal,
backed by the simulator's cell physics, so the real driver code, pyvisa and
pyserial run end to end. ``transport`` holds the servers and the fault
injection every emulator shares.
"""
