"""Python loads this at start-up when tests/clock is on PYTHONPATH (only in a run at a fixed clock, `pytest --clock`):
the process's clock moves by the same offset as the test process's, so every process of the run agrees on the time."""
import os

_offset = os.environ.get("TEST_CLOCK_OFFSET")
if _offset:
    import time

    import time_machine

    time_machine.travel(time.time() + float(_offset), tick=True).start()
