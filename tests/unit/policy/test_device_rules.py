"""Policy rules that depend on the device certificate (``device: required|absent``)."""

from __future__ import annotations

import pytest

from gateway.policy import PolicyError
from gateway.policy.loader import parse_policy

POLICY = """
version: 1
rules:
  - comment: Administrators work only from an enrolled device.
    action: deny
    roles: [admin]
    device: absent
    paths: ["/**"]
  - comment: Writes need a device; reads do not.
    action: allow
    roles: [admin, mobile]
    methods: [POST]
    device: required
    paths: ["/api/v1/**"]
  - comment: Everyone reads.
    action: allow
    methods: [GET]
    paths: ["/api/v1/**"]
"""


def test_device_conditions() -> None:
    policy = parse_policy(POLICY, "p.yaml")
    path = ("api", "v1", "Docs")
    assert not policy.decide("admin", "GET", path, (), has_device=False).allowed
    assert policy.decide("admin", "GET", path, (), has_device=True).allowed
    assert policy.decide("mobile", "GET", path, (), has_device=False).allowed
    assert not policy.decide("mobile", "POST", path, (), has_device=False).allowed
    assert policy.decide("mobile", "POST", path, (), has_device=True).allowed


def test_unknown_device_choice_is_refused_with_its_line() -> None:
    with pytest.raises(PolicyError, match=r"rules\[0\]\.device.*required"):
        parse_policy(POLICY.replace("device: absent", "device: maybe"), "p.yaml")
