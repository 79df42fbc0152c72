"""Access policy: which authenticated role may use which method on which path.

Runs after Auth (which sets ``gateway_role`` and ``gateway_doc_types`` in flow.metadata) and only
on bases with ``user_auth: true``. The path is normalised first; a path the gateway cannot read
one way only is refused with 400, and the normal form is what goes to the back end, so the back
end serves exactly the path that was decided on. Decisions happen in ``requestheaders``: a
streamed request body would already be on its way to the back end by the ``request`` hook.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from mitmproxy import http

from addons._context import listener_to_check
from addons._guard import deny, fail_closed
from addons.client_auth import DEVICE_KEY
from gateway.config import GatewayConfig
from gateway.policy import DEFAULT_POLICY_FILE, ROLES, AccessPolicy, AmbiguousPath, load_policy, normalise_path

logger = logging.getLogger("gateway.policy")

GATEWAY_PREFIX = "/.gateway/"  # the gateway's own endpoints; Auth answers them


def _doc_types(value: object) -> tuple[str, ...] | None:
    if isinstance(value, str) or not isinstance(value, Iterable):
        return None
    types = tuple(value)
    return types if all(isinstance(t, str) for t in types) else None


class Policy:
    def __init__(self, default_file: Path = DEFAULT_POLICY_FILE) -> None:
        self.default_file = default_file
        self.by_base: dict[str, AccessPolicy] = {}
        # What the log says for each rule ("default.yaml rules[3]"), by base id and rule index:
        # it depends only on the configuration, so it is made once per reload.
        self._rule_labels: dict[str, dict[int, str]] = {}

    def apply_config(self, cfg: GatewayConfig) -> None:
        """Load every base's policy; a broken file raises, refusing the whole reload."""
        loaded: dict[Path, AccessPolicy] = {}
        by_base: dict[str, AccessPolicy] = {}
        for base in cfg.bases:
            path = base.policy or self.default_file
            if path not in loaded:
                loaded[path] = load_policy(path)
            by_base[base.id] = loaded[path]
        labels = {id(policy): {rule.index: f"{Path(policy.source).name} rules[{rule.index}]" for rule in policy.rules}
                  for policy in loaded.values()}
        self._rule_labels = {base_id: labels[id(policy)] for base_id, policy in by_base.items()}
        self.by_base = by_base
        logger.debug("policies loaded: %s", ", ".join(str(p) for p in loaded) or "none")

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        listener = listener_to_check(flow)
        if listener is None:
            return
        if not listener.base.user_auth or flow.request.path.startswith(GATEWAY_PREFIX):
            return
        policy = self.by_base.get(listener.base.id)
        role = flow.metadata.get("gateway_role")
        doc_types = _doc_types(flow.metadata.get("gateway_doc_types"))
        if policy is None or role not in ROLES or doc_types is None:
            # Auth should have answered or identified the user; anything else is a bug, and a
            # bug must not open the base.
            self._refuse(flow, 403, "the gateway has no identity or policy for this request")
            return
        try:
            normal = normalise_path(flow.request.path)
        except AmbiguousPath as e:
            self._refuse(flow, 400, e.reason)
            return
        decision = policy.decide(str(role), flow.request.method, normal.segments, doc_types,
                                 bool(flow.metadata.get(DEVICE_KEY)))
        if decision.rule is not None:
            label = self._rule_labels.get(listener.base.id, {}).get(decision.rule.index)
            flow.metadata["gateway_policy_rule"] = label or f"{Path(policy.source).name} rules[{decision.rule.index}]"
        if not decision.allowed:
            self._refuse(flow, 403, decision.reason)
            return
        if normal.target != flow.request.path:
            flow.request.path = normal.target

    @staticmethod
    def _refuse(flow: http.HTTPFlow, status: int, reason: str) -> None:
        flow.metadata["gateway_verdict"] = "denied-policy"
        flow.metadata["gateway_reason"] = reason
        title = "Bad Request" if status == 400 else "Forbidden"
        deny(flow, status, f"{status} {title}: {reason}")
