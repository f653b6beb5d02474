"""Analysis: orientation, pelvic tilt, bar velocity, reps and sets. Pure numpy, no I/O."""
