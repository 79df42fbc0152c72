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
ANSWERS_REMEMBERED = 4096  # a flood of distinct paths costs a re-decision, never memory


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
        # Answers by (base, role, method, target, document types, device): per configuration.
        self._answers: dict[tuple[object, ...], tuple[str | None, tuple[int, str] | None, str | None, bool]] = {}

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
        self._answers = {}  # after by_base: a request between the two decides on the new policies
        logger.debug("policies loaded: %s", ", ".join(str(p) for p in loaded) or "none")

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        listener = listener_to_check(flow)
        if listener is None:
            return
        request = flow.request
        target = request.path
        if not listener.base.user_auth or target.startswith(GATEWAY_PREFIX):
            return
        metadata = flow.metadata
        role = metadata.get("gateway_role")
        raw_types = metadata.get("gateway_doc_types")
        # The answer depends on nothing else: the same request of the same user is decided once
        # per loaded configuration (apply_config starts an empty table; a policy file change is
        # a reload). Only identities Auth made (a tuple of types) are looked up.
        key = (listener.base.id, role, request.method, target, raw_types, bool(metadata.get(DEVICE_KEY)))
        answers = self._answers
        answer = answers.get(key) if type(raw_types) is tuple and type(role) is str else None
        if answer is None:
            answer = self._answer(listener.base.id, role, request.method, target, raw_types, key[5])
            if answer[3] and type(raw_types) is tuple and type(role) is str:
                if len(answers) >= ANSWERS_REMEMBERED:
                    answers.clear()
                answers[key] = answer
        label, refusal, normal_target, _cacheable = answer
        if label is not None:
            metadata["gateway_policy_rule"] = label
        if refusal is not None:
            self._refuse(flow, *refusal)
            return
        if normal_target is not None:
            request.path = normal_target

    def _answer(self, base_id: str, role: object, method: str, target: str, raw_types: object,
                has_device: bool) -> tuple[str | None, tuple[int, str] | None, str | None, bool]:
        """(rule label, (status, reason) of a refusal, the normal target if it differs, cacheable)."""
        policy = self.by_base.get(base_id)
        doc_types = _doc_types(raw_types)
        if policy is None or role not in ROLES or doc_types is None:
            # Auth should have answered or identified the user; anything else is a bug, and a
            # bug must not open the base. Never remembered.
            return None, (403, "the gateway has no identity or policy for this request"), None, False
        try:
            normal = normalise_path(target)
        except AmbiguousPath as e:
            return None, (400, e.reason), None, True
        decision = policy.decide(str(role), method, normal.segments, doc_types, has_device)
        label = None
        if decision.rule is not None:
            label = self._rule_labels.get(base_id, {}).get(decision.rule.index) \
                or f"{Path(policy.source).name} rules[{decision.rule.index}]"
        if not decision.allowed:
            return label, (403, decision.reason), None, True
        return label, None, normal.target if normal.target != target else None, True

    @staticmethod
    def _refuse(flow: http.HTTPFlow, status: int, reason: str) -> None:
        flow.metadata["gateway_verdict"] = "denied-policy"
        flow.metadata["gateway_reason"] = reason
        title = "Bad Request" if status == 400 else "Forbidden"
        deny(flow, status, f"{status} {title}: {reason}")
