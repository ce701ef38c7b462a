"""The effectful shell: runners that drive the engine, and the storages they persist to."""
