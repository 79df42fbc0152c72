"""The small HTTP apps beside mitmproxy: the admin listener, the console's request plumbing, the side listener."""
