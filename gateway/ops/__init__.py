"""Facts about the installed machine: what `gateway check` reports, probes, run files, logs, the event journal."""
