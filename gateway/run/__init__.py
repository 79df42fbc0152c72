"""The processes: one gateway (runner), the supervisor of several workers, and what both share (startup)."""
