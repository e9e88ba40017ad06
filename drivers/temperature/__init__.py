"""Temperature chambers and controllers (``TemperatureController`` drivers):
Espec chambers (ASCII protocol over TCP or serial) and Eurotherm-style Modbus
controllers (Modbus TCP or RTU)."""
