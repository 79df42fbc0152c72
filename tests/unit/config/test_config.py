from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_size

GOOD = """\
state_dir: ./state
listen_host: 0.0.0.0
tls:
  cert: certs/server.pem
  key: certs/server.key
bases:
  - id: 21e6d501-e8c1-44e0-b0cd-f30a369b1822
    name: "Магазин 15 Вещевой, Расширенный"
    folder: bases/shop15
    comment: ""
    https: true
    user_auth: false
    data:  {listen: 51824, backend: "http://127.0.0.1:9706"}
    print: {enabled: true, listen: 51825, backend: "http://127.0.0.1:9707"}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_issue_example_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    base = cfg.bases[0]
    assert base.name == "Магазин 15 Вещевой, Расширенный"
    assert base.folder == (tmp_path / "bases" / "shop15").resolve()
    assert base.whitelist_file == base.folder / "Server" / "whitelist.dat"
    assert cfg.tls.cert == (tmp_path / "certs" / "server.pem").resolve()
    assert cfg.state_dir == (tmp_path / "state").resolve()
    assert cfg.listener_for_port(51825).role == "print"
    assert cfg.listener_for_port(51824).endpoint.backend_port == 9706
    assert cfg.listener_for_port(9706) is None


def test_disabled_print_server_opens_no_listener(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD.replace("enabled: true", "enabled: false")))
    assert [listener.port for listener in cfg.listeners()] == [51824]


@pytest.mark.parametrize(
    ("mutation", "key", "words"),
    [
        (("listen: 51825", "listen: 70000"), "bases[0].print.listen", "out of range"),
        (("listen: 51825", "listen: \"abc\""), "bases[0].print.listen", "whole number"),
        (("https: true", "https: maybe"), "bases[0].https", "true or false"),
        (("backend: \"http://127.0.0.1:9706\"", "backend: \"ftp://x\""), "bases[0].data.backend", "not a back-end address"),
        (("user_auth: false", "user_auht: false"), "bases[0].user_auht", "unknown key"),
        (("listen_host: 0.0.0.0", "listen_host: somewhere"), "listen_host", "not an IP address"),
        (("name: \"Магазин 15 Вещевой, Расширенный\"", "name: \"\""), "bases[0].name", "empty"),
    ],
)
def test_errors_name_file_key_path_and_problem(tmp_path: Path, mutation: tuple[str, str], key: str, words: str) -> None:
    path = write(tmp_path, GOOD.replace(*mutation))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message
    assert words in message


def test_second_base_error_uses_its_index(tmp_path: Path) -> None:
    text = GOOD + """\
  - id: second
    name: "Склад 2"
    data: {listen: 0, backend: "http://127.0.0.1:9708"}
"""
    with pytest.raises(ConfigError, match=r"bases\[1\]\.data\.listen"):
        load_config(write(tmp_path, text))


def test_port_clash_names_both_bases(tmp_path: Path) -> None:
    text = GOOD + """\
  - id: second
    name: "Склад 2"
    data: {listen: 51825, backend: "http://127.0.0.1:9708"}
"""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert "bases[1].data.listen" in message
    assert "Склад 2" in message and "Магазин 15 Вещевой, Расширенный" in message
    assert "51825" in message


def test_duplicate_ids_refused(tmp_path: Path) -> None:
    text = GOOD + """\
  - id: 21e6d501-e8c1-44e0-b0cd-f30a369b1822
    name: "Копия"
    data: {listen: 51900, backend: "http://127.0.0.1:9708"}
"""
    with pytest.raises(ConfigError, match=r"bases\[1\]\.id"):
        load_config(write(tmp_path, text))


def test_yaml_syntax_error_gives_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: not valid YAML"):
        load_config(write(tmp_path, "bases: [\n  {id: 1\n"))


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.yaml")


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode("utf-8"))
    assert load_config(path).bases[0].name.startswith("Магазин")


@pytest.mark.parametrize(("text", "size"), [("4m", 4 * 1024**2), ("512k", 512 * 1024), ("1048576", 1048576), ("1 GiB", 1024**3)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_bad_stream_threshold_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"proxy\.stream_threshold.*not a size"):
        load_config(write(tmp_path, GOOD + "proxy: {stream_threshold: lots}\n"))


@pytest.mark.parametrize("name", ["deploy/gateway.example.yaml", "gateway/config/demo.yaml"])
def test_shipped_configurations_load(name: str) -> None:
    cfg = load_config(Path(__file__).resolve().parents[3] / name)
    assert cfg.bases


def test_a_key_written_twice_is_refused_with_both_lines(tmp_path: Path) -> None:
    text = GOOD.replace("    https: true\n", "    https: true\n    https: false\n")
    with pytest.raises(ConfigError, match=r"line 12, column 5: .*'https' is written twice \(first on line 11\)"):
        load_config(write(tmp_path, text))


def test_the_example_configuration_names_every_key_the_parser_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23 point 15: every key the parser asks for is in deploy/gateway.example.yaml (set, or
    shown in a comment), so an administrator finds it there (acme.tls_alpn_port was missing)."""
    import re

    from gateway.config import reader

    asked: set[str] = set()
    real_get, real_sub = reader._Reader.get, reader._Reader.sub

    def get(self: reader._Reader, name: str, kind: object, default: object) -> object:
        asked.add(re.sub(r"\[\d+\]", "[]", self.key(name)))
        return real_get(self, name, kind, default)

    def sub(self: reader._Reader, name: str) -> reader._Reader:
        asked.add(re.sub(r"\[\d+\]", "[]", self.key(name)))
        return real_sub(self, name)

    monkeypatch.setattr(reader._Reader, "get", get)
    monkeypatch.setattr(reader._Reader, "sub", sub)
    example = Path(__file__).resolve().parents[3] / "deploy" / "gateway.example.yaml"
    load_config(example)
    text = example.read_text(encoding="utf-8")
    missing = sorted(key for key in asked if not re.search(rf"(^|[\s{{,#]){re.escape(key.rsplit('.', 1)[-1])}:", text,
                                                           re.MULTILINE))
    assert len(asked) > 80 and not missing, missing


def test_gateway_demo_writes_its_configuration_from_the_package_when_missing(tmp_path: Path) -> None:
    from gateway.config.demo import DEMO_DEFAULT_TEXT, ensure_demo_config

    target = tmp_path / "demo" / "gateway.yaml"
    assert ensure_demo_config(target)
    assert target.read_text(encoding="utf-8") == DEMO_DEFAULT_TEXT
    assert load_config(target).bases
    target.write_text(DEMO_DEFAULT_TEXT + "# edited\n", encoding="utf-8")
    assert not ensure_demo_config(target)  # an operator's copy is never overwritten
    assert target.read_text(encoding="utf-8").endswith("# edited\n")
