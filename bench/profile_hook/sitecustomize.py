"""Loaded by a gateway that bench/calls.py starts (this folder on PYTHONPATH): cProfile of the
main thread (the event loop), switched on by SIGUSR1 and written to $GATEWAY_BENCH_PROFILE by
SIGUSR2, so that only the measured window is counted. Never imported by the gateway itself."""

import os

_target = os.environ.get("GATEWAY_BENCH_PROFILE")
if _target and hasattr(__import__("signal"), "SIGUSR1"):
    import cProfile
    import signal

    _profile = cProfile.Profile()

    def _start(signum, frame):  # noqa: ANN001
        _profile.enable()

    def _stop(signum, frame):  # noqa: ANN001
        _profile.disable()
        _profile.dump_stats(_target)

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
