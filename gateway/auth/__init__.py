"""The login path: one attempt's decision, its driver, the throttle, sessions and credentials."""
