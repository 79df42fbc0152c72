"""Access policies: which role may use which method on which path, after path normalisation."""

from gateway.policy.loader import DEFAULT_POLICY_FILE, PolicyError, load_policy, parse_pattern, parse_policy
from gateway.policy.model import ROLES, AccessPolicy, Decision, Rule
from gateway.policy.paths import AmbiguousPath, NormalPath, normalise_path

__all__ = [
    "DEFAULT_POLICY_FILE", "PolicyError", "load_policy", "parse_pattern", "parse_policy",
    "ROLES", "AccessPolicy", "Decision", "Rule",
    "AmbiguousPath", "NormalPath", "normalise_path",
]
