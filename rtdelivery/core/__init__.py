"""The event model, cursors and wire framing: pure functions and values, no I/O."""
