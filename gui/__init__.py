"""The Qt GUI (``labctl gui``): a view and remote control of the engine, the runs and the queue."""
