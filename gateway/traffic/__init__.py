"""Pure per-request pieces: request-head checks, PROXY protocol, redaction, backups."""
