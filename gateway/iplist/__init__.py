"""IP allow and deny lists (the seed's whitelist.dat and blacklist.dat): parsing, lookup, decision.

Pure core, no mitmproxy: ``addons/ipfilter.py`` is the thin edge that calls it.
"""

from gateway.iplist.decision import Decision, Match, client_address, decide
from gateway.iplist.files import ListUnreadable
from gateway.iplist.lists import CompiledList, compile_text, load_list
from gateway.iplist.parse import EntryError, LineError, parse_entry, parse_text
from gateway.iplist.registry import IpLists
from gateway.iplist.watch import POLL_INTERVAL, ListWatcher

__all__ = [
    "POLL_INTERVAL", "CompiledList", "Decision", "EntryError", "IpLists", "LineError", "ListUnreadable",
    "ListWatcher", "Match", "client_address", "compile_text", "decide", "load_list", "parse_entry", "parse_text",
]
