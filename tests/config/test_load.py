"""Config errors name the file, the line and the key path; all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from miltrd.cli import main
from miltrd.config import ConfigError, load, load_text, parse_listen

REPO = Path(__file__).resolve().parents[2]


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(text, "m.toml")
    return [str(p) for p in info.value.problems]


def test_every_problem_is_reported_at_once_with_lines() -> None:
    text = """\
[daemon]
listen = ["inet:8894@127.0.0.1", "inet:127.0.0.1:8894"]
timout = 3
on_error = "explode"

[internal]
networks = ["10.0.0.0/8", "10.0.0.300/8"]

[chain]
plugins = ["nosuch"]
"""
    assert problems(text) == [
        'm.toml:2: daemon.listen[1]: "inet:127.0.0.1:8894": expected inet:PORT@HOST '
        "(that is Postfix's syntax; miltrd uses inet:8894@127.0.0.1)",
        'm.toml:3: daemon.timout: unknown key (did you mean "timeout"?)',
        "m.toml:4: daemon.on_error: expected one of 'tempfail', 'continue', 'reject', 'accept', "
        'got "explode"',
        "m.toml:7: internal.networks[1]: not a network: '10.0.0.300/8' does not appear to be an "
        "IPv4 or IPv6 network",
        "m.toml:10: chain.plugins[0]: plugin nosuch is not installed (available: bcc, defang, dkim, dmarc, spf, wiretap, zombie)",
    ]


def test_toml_syntax_error_names_the_line() -> None:
    (problem,) = problems('[daemon]\nlisten = ["a"\n')
    assert problem.startswith("m.toml:")
    assert "TOML syntax error" in problem


def test_plugin_options_are_checked_with_their_key_path() -> None:
    text = """\
[internal]
domains = ["example.com"]

[chain]
plugins = ["zombie"]

[plugins.zombie]
action = "explode"
subdomain = true
mode = "watch"
"""
    assert problems(text) == [
        "m.toml:10: plugins.zombie.mode: expected one of 'enforce', 'observe', got \"watch\"",
        "m.toml:8: plugins.zombie.action: expected one of 'reject', 'tempfail', 'discard', "
        "'quarantine', got \"explode\"",
        'm.toml:9: plugins.zombie.subdomain: unknown key (did you mean "subdomains"?)',
    ]


def test_plugin_refusing_its_options_is_located() -> None:
    text = """\
[chain]
plugins = ["bcc"]

[[plugins.bcc.rules]]
copy_to = ["x-{nope}@example.com"]
"""
    from miltrd.chain import build_runtime

    with pytest.raises(ConfigError) as info:
        build_runtime(load_text(text, "m.toml"))
    assert [str(p) for p in info.value.problems] == [
        "m.toml:5: plugins.bcc.rules[0].copy_to[0]: unknown template field {nope}"
    ]


def test_table_for_a_plugin_not_in_the_chain_is_a_warning_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Sites keep the settings of a switched-off plugin: check passes and says
    # the table is unused (not checked: its bad key is not reported).
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        '[internal]\ndomains = ["example.com"]\n[chain]\nplugins = ["spf"]\n'
        '[plugins.dkim]\nbogus = 1\n[plugins.sfp]\nmode = "observe"\n'
    )
    assert main(["check", "-c", str(cfg)]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        f'warning: {cfg}:5: plugins.dkim: not in chain.plugins, so not used or checked (add "dkim" '
        "there to enable it)\n"
        f"warning: {cfg}:7: plugins.sfp: not in chain.plugins, so not used or checked (a "
        'misspelling of "spf"? else add "sfp" to chain.plugins to enable it)\n'
    )
    assert "1. spf [enforce]" in captured.out


def test_use_names_a_missing_module() -> None:
    text = '[chain]\nplugins = ["x"]\n[plugins.x]\nuse = "no_such_module_here:Thing"\n'
    assert problems(text) == [
        'm.toml:4: plugins.x.use: use = "no_such_module_here:Thing": '
        "module no_such_module_here is not installed"
    ]


def test_unknown_section_and_wrong_types() -> None:
    text = '[deamon]\n[daemon]\nmax_connections = "many"\n[internal]\nauthenticated = "yes"\n'
    assert problems(text) == [
        "m.toml:1: deamon: unknown section (expected daemon, internal, chain, plugins)",
        'm.toml:3: daemon.max_connections: expected an integer, got "many"',
        'm.toml:5: internal.authenticated: expected true or false, got "yes"',
    ]


@pytest.mark.parametrize(
    "text, kind, where",
    [
        ("local:/run/m.sock", "unix", "/run/m.sock"),
        ("unix:/run/m.sock", "unix", "/run/m.sock"),
        ("inet:8894@127.0.0.1", "inet", "127.0.0.1"),
        ("inet6:8894@[::1]", "inet6", "::1"),
        ("inet:8894", "inet", ""),
    ],
)
def test_listen_specs(text: str, kind: str, where: str) -> None:
    spec = parse_listen(text)
    assert spec.kind == kind
    assert (spec.path or spec.host) == where


@pytest.mark.parametrize(
    "text", ["inet:0@127.0.0.1", "inet:99999@x", "local:relative", "tcp:1@x", "inet:8894@::1", "x"]
)
def test_bad_listen_specs(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


def test_missing_file_is_one_clear_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "nope.toml")
    (problem,) = info.value.problems
    assert str(problem).endswith("nope.toml: cannot read: No such file or directory")


def test_shipped_sample_config_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(REPO / "etc" / "miltrd.toml")]) == 0
    out = capsys.readouterr().out
    # Its [internal] domains are a placeholder: nothing is enforced until the
    # site names its own (etc/miltrd.toml says so).
    for i, name in enumerate(["zombie", "spf", "bcc"], 1):
        assert f"{i}. {name} [observe]" in out
    assert out.count("observe, not enforce: internal.domains holds the placeholder") == 3


def test_check_exits_1_with_the_problems(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon]\nlisten = []\n")
    assert main(["check", "-c", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2: daemon.listen: at least one listen address is needed" in err


def test_miltrd_config_environment_variable(tmp_path: Path, monkeypatch, capsys) -> None:
    cfg = tmp_path / "env.toml"
    cfg.write_text('[daemon]\nlisten = ["inet:9999@127.0.0.1"]\n')
    monkeypatch.setenv("MILTRD_CONFIG", str(cfg))
    assert main(["check"]) == 0
    assert "inet:9999@127.0.0.1" in capsys.readouterr().out


def test_plugin_common_keys_go_through_the_same_coercion() -> None:
    text = """\
[chain]
plugins = ["bcc", "zombie"]

[plugins.bcc]
on_error = "explode"
timeout = "5"

[plugins.zombie]
timeout = 0
"""
    assert problems(text) == [
        "m.toml:5: plugins.bcc.on_error: expected one of 'tempfail', 'continue', 'reject', "
        "'accept', got \"explode\"",
        'm.toml:6: plugins.bcc.timeout: expected a number, got "5"',
        "m.toml:9: plugins.zombie.timeout: expected a number of seconds > 0, got 0",
    ]


def test_mode_and_on_error_reach_the_runtime_as_enums() -> None:
    from miltrd.chain import build_runtime
    from miltrd.config import Mode, OnError

    config = load_text(
        '[daemon]\non_error = "continue"\nsocket_mode = "0640"\n[internal]\ndomains = ["example.com"]\n'
        '[chain]\nplugins = ["bcc", "zombie"]\n'
        '[plugins.bcc]\nmode = "observe"\non_error = "reject"\n',
        "m.toml",
    )
    assert config.daemon.on_error is OnError.CONTINUE
    assert config.daemon.socket_mode == 0o640
    runtime = build_runtime(config)
    bcc, zombie = runtime.plugins
    assert bcc.entry.mode is Mode.OBSERVE and bcc.observe_only
    assert bcc.on_error is OnError.REJECT
    assert zombie.entry.mode is Mode.ENFORCE and zombie.on_error is OnError.CONTINUE
    assert f"{bcc.on_error}" == "reject" and f"[{bcc.entry.mode}]" == "[observe]"


def test_socket_mode_must_be_octal() -> None:
    assert problems('[daemon]\nsocket_mode = "0999"\n') == [
        'm.toml:2: daemon.socket_mode: expected an octal mode like "0660", got "0999"'
    ]


def test_a_bad_key_in_a_later_array_entry_is_located_in_that_entry() -> None:
    # Each [[...]] block is its own entry: the key the problem names is in
    # the second block, so that block's line is reported, not the first's.
    text = """\
[internal]
domains = ["example.com"]

[chain]
plugins = ["bcc"]

[[plugins.bcc.rules]]
direction = ["incoming"]
copy_to = ["a@example.com"]

[[plugins.bcc.rules]]
direction = ["sideways"]
copy_to = ["b@example.com"]
"""
    assert problems(text) == [
        "m.toml:12: plugins.bcc.rules[1].direction[0]: expected one of 'incoming', "
        "'outgoing', 'internal', got \"sideways\""
    ]


def test_a_plugin_refusal_in_a_later_array_entry_is_located_in_that_entry() -> None:
    text = """\
[chain]
plugins = ["wiretap"]

[plugins.wiretap]
root = "/var/spool/miltrd/archive"

[[plugins.wiretap.archive]]
path = "{direction}"

[[plugins.wiretap.archive]]
format = "mbox"
path = "{nope}"

[[plugins.wiretap.tap]]
users = ["a@example.com"]
copy_to = "legal@example.com"
"""
    from miltrd.chain import build_runtime

    with pytest.raises(ConfigError) as info:
        build_runtime(load_text(text, "m.toml"))
    assert [str(p) for p in info.value.problems] == [
        "m.toml:12: plugins.wiretap.archive[1].path: unknown template field {nope}"
    ]


def test_line_index_places_tables_inside_array_entries() -> None:
    from miltrd.config.locate import LineIndex

    index = LineIndex(
        "[[a.rules]]\nx = 1\n[a.rules.when]\ny = 2\n"
        "[[a.rules]]\nx = 3\n[a.rules.when]\ny = 4\n[[a.rules.sub]]\nz = 5\n[[a.rules.sub]]\nz = 6\n"
    )
    assert [
        index.line_of(p)
        for p in (
            "a.rules[0].x",
            "a.rules[0].when.y",
            "a.rules[1].x",
            "a.rules[1].when.y",
            "a.rules[1].sub[0].z",
            "a.rules[1].sub[1].z",
            "a.rules[1].sub[1].z[3]",
            "a.rules[1].nokey",
        )
    ] == [2, 4, 6, 8, 10, 12, 12, 5]


@pytest.mark.parametrize(
    "text, line",
    [
        # domains set but empty: its own line.
        (
            '[internal]\nnetworks = ["127.0.0.0/8"]\ndomains = []\n\n[chain]\nplugins = ["zombie"]\n',
            3,
        ),
        # [internal] without domains: the table it belongs in.
        ('[chain]\nplugins = ["spf", "zombie"]\n\n[internal]\nnetworks = ["127.0.0.0/8"]\n', 4),
        # no [internal] at all, no [plugins.zombie]: where zombie is enabled.
        ('[chain]\nplugins = ["spf", "zombie"]\n', 2),
    ],
)
def test_a_plugin_needing_a_key_of_internal_names_that_key_and_its_line(
    text: str, line: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text(text)
    assert main(["check", "-c", str(cfg)]) == 1
    assert capsys.readouterr().err == (
        f"{cfg}:{line}: internal.domains: lists no domain, but plugin zombie needs the "
        "site's own domains to know what is ours\n"
    )


def test_relative_paths_are_relative_to_the_config_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "etc"
    (site / "dkim").mkdir(parents=True)
    (site / "reports").mkdir()
    assert main(["dkim", "genkey", "example.com", "s1", "-D", str(site / "dkim")]) == 0
    cfg = site / "miltrd.toml"
    cfg.write_text(
        '[daemon]\nsyslog_socket = "log.sock"\nsendmail_cf = "sendmail.cf"\n'
        '[internal]\ndomains = ["example.com"]\n'
        '[chain]\nplugins = ["dkim", "wiretap", "defang", "dmarc"]\n'
        '[plugins.wiretap]\nroot = "archive"\n'
        '[plugins.defang]\nsave_dir = "./quarantine"\n'
        '[plugins.dmarc]\nreport_dir = "reports"\n'
        '[[plugins.dkim.keys]]\ndomain = "example.com"\nselector = "s1"\n'
        'key_file = "dkim/s1.private"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where the admin happens to be
    capsys.readouterr()
    assert main(["check", "-c", str(cfg)]) == 0, capsys.readouterr().err
    assert "signs example.com with selector s1" in capsys.readouterr().out
    config = load(cfg)
    assert config.daemon.syslog_socket == str(site / "log.sock")
    assert config.daemon.sendmail_cf == str(site / "sendmail.cf")
    options = {entry.name: entry.options for entry in config.plugins}
    assert options["dkim"].keys[0].key_file == str(site / "dkim" / "s1.private")
    assert options["wiretap"].root == str(site / "archive")
    assert options["defang"].save_dir == str(site / "quarantine")
    assert options["dmarc"].report_dir == str(site / "reports")
    # Absolute paths and "" (off) are kept as written.
    assert options["dmarc"].psl_file == "/usr/share/publicsuffix/public_suffix_list.dat"
    cfg.write_text(cfg.read_text().replace('report_dir = "reports"', 'report_dir = ""'))
    assert {e.name: e.options for e in load(cfg).plugins}["dmarc"].report_dir == ""


def test_a_string_where_a_list_is_expected_says_a_list_of_strings() -> None:
    # Postfix writes one address where miltrd takes a list: the message
    # must say what to write, not "a list of a table".
    assert problems('[daemon]\nlisten = "inet:8894@127.0.0.1"\n') == [
        'm.toml:2: daemon.listen: expected a list of strings, got "inet:8894@127.0.0.1"'
    ]
    assert problems('[internal]\ndomains = "example.com"\n') == [
        'm.toml:2: internal.domains: expected a list of strings, got "example.com"'
    ]
