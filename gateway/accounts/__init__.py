"""Groups, users and their secrets: rules, hashing, changes, YAML transfer."""

from gateway.accounts.rules import AccountError
from gateway.accounts.service import Accounts

__all__ = ["AccountError", "Accounts"]
