"""What more than one layer needs, written once: the atomic file write, the loopback test."""
