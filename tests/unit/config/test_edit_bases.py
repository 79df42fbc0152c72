"""Base edits from the console: the file's comments and other bases stay as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError
from gateway.config.edit import EditError
from gateway.config.edit_bases import change_bases

CONFIG = """\
# the operator's header
state_dir: ./state
listen_host: 127.0.0.1
bases:
  # the main warehouse
  - id: b1   # code from the legacy dialog
    name: Склад
    https: false   # plain until the certificate arrives
    policy: ./policy.yaml
    data:
      listen: 18001
      backend: http://127.0.0.1:9000
  - {id: b2, name: Flow, https: false, data: {listen: 18003, backend: "http://127.0.0.1:9000"}}
# after the bases
admin:
  enabled: false
"""


def _file(tmp_path: Path) -> Path:
    (tmp_path / "policy.yaml").write_text("rules: []\n", encoding="utf-8")
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_a_change_keeps_comments_and_unmanaged_keys(tmp_path: Path) -> None:
    path = _file(tmp_path)
    before, after = change_bases(path, "b1", {"https": True, "user_auth": True, "tls": {"cert": "./склад.pem"},
                                              "data": {"listen": 18011, "backend": "http://127.0.0.1:9000"}})
    text = path.read_text(encoding="utf-8")
    for kept in ("# the operator's header", "# the main warehouse", "# code from the legacy dialog",
                 "# plain until the certificate arrives", "policy: ./policy.yaml", "# after the bases",
                 "- {id: b2, name: Flow"):
        assert kept in text
    assert "https: true   # plain until" in text
    base = after.base_by_id("b1")
    assert base is not None and base.data.listen == 18011 and base.user_auth and base.tls is not None
    assert base.tls.cert == (tmp_path / "склад.pem").resolve() and before.base_by_id("b1").data.listen == 18001  # type: ignore[union-attr]


def test_add_and_remove(tmp_path: Path) -> None:
    path = _file(tmp_path)
    _before, after = change_bases(path, None, {"id": "b3", "name": "Новая", "https": False,
                                               "data": {"listen": 18020, "backend": "http://127.0.0.1:9001"}})
    assert [b.id for b in after.bases] == ["b1", "b2", "b3"]
    _before, after = change_bases(path, "b1", None)
    assert [b.id for b in after.bases] == ["b2", "b3"]
    assert "# the operator's header" in path.read_text(encoding="utf-8")


def test_refusals_leave_the_file_untouched(tmp_path: Path) -> None:
    path = _file(tmp_path)
    with pytest.raises(ConfigError, match=r"port 18003 of base 'Flow' .* already used by base 'Склад'") as e:
        change_bases(path, "b1", {"data": {"listen": 18003, "backend": "http://127.0.0.1:9000"}})
    assert e.value.source == str(path)
    with pytest.raises(EditError, match="flow style"):
        change_bases(path, "b2", {"name": "x"})

    def refuse(cfg: object) -> None:
        raise RuntimeError("the caller's check said no")

    with pytest.raises(RuntimeError):
        change_bases(path, "b1", {"name": "Другое"}, refuse)
    assert path.read_text(encoding="utf-8") == CONFIG
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
