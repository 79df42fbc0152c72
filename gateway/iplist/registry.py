"""Every base's lists, built from the gateway configuration: the one object the addon asks.

A base's whitelists are its own ``<folder>/Server/whitelist.dat`` followed by the global
``ip_lists.whitelist`` files; likewise for blacklists. A file named by several bases (the global
ones) is read and compiled once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.config import GatewayConfig
from gateway.iplist.files import ListUnreadable
from gateway.iplist.decision import Decision, client_address, decide, find
from gateway.iplist.watch import ListWatcher


@dataclass(frozen=True)
class BaseLists:
    base_id: str
    whitelists: tuple[Path, ...]
    blacklists: tuple[Path, ...]
    whitelist_only: bool


def base_lists(cfg: GatewayConfig) -> dict[str, BaseLists]:
    return {
        base.id: BaseLists(base.id, (base.whitelist_file, *cfg.ip_lists.whitelist),
                           (base.blacklist_file, *cfg.ip_lists.blacklist), base.whitelist_only)
        for base in cfg.bases
    }


def missing_global_lists(cfg: GatewayConfig) -> list[str]:
    """Global list files named in the configuration that do not exist.

    A base's own Server/*.dat may be absent (no file is an empty list, as in the seed), but a
    file someone named in ip_lists was meant to apply: a typo there must not silently let
    every address in.
    """
    problems = []
    for kind, paths in (("whitelist", cfg.ip_lists.whitelist), ("blacklist", cfg.ip_lists.blacklist)):
        for index, path in enumerate(paths):
            if not path.exists():
                problems.append(f"ip_lists.{kind}[{index}]: {path}: file not found; create it (it may be "
                                "empty) or remove it from the configuration")
    return problems


class IpLists:
    def __init__(self, watcher: ListWatcher | None = None) -> None:
        self.watcher = watcher or ListWatcher()
        self._bases: dict[str, BaseLists] = {}

    def configure(self, cfg: GatewayConfig) -> None:
        """Adopt a configuration. Raises ListUnreadable (and changes nothing) if a new file can't be read."""
        missing = missing_global_lists(cfg)
        if missing:
            raise ListUnreadable(cfg.source, "; ".join(missing))
        bases = base_lists(cfg)
        self.watcher.track(path for lists in bases.values() for path in (*lists.whitelists, *lists.blacklists))
        self._bases = bases

    def decide(self, base_id: str, host: str) -> Decision:
        """Raises KeyError for an unknown base and ValueError for a host that is not an address."""
        lists = self._bases[base_id]
        get = self.watcher.get
        return decide(host, [get(p) for p in lists.whitelists], [get(p) for p in lists.blacklists],
                      lists.whitelist_only)

    def is_whitelisted(self, base_id: str, host: str) -> bool:
        lists = self._bases.get(base_id)
        if lists is None:
            return False
        try:
            family, value = client_address(host)
        except ValueError:
            return False
        return find([self.watcher.get(p) for p in lists.whitelists], family, value) is not None

    def poll(self) -> list[Path]:
        return self.watcher.poll()

    def sizes(self) -> dict[str, int]:
        """Entries per list file, keyed by the file's path (for metrics and the console)."""
        return {str(compiled.path): compiled.entries for compiled in self.watcher.all()}
