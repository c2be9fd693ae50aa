"""``miltrd dkim genkey`` and what ``miltrd check`` says about dkim and dmarc."""

from __future__ import annotations

import os
import pwd
import re
import stat
from pathlib import Path

from miltrd.plugins._dkimkeys import load_key

from miltrd.cli import main

CHECK_CONFIG = """\
[daemon]
listen = ["inet:8894@127.0.0.1"]
{user}
[chain]
plugins = ["spf", "dkim", "dmarc"]

[plugins.dkim]
nameservers = ["127.0.0.1:53"]

[[plugins.dkim.keys]]
domain = "example.com"
selector = "sel1"
key_file = "{rsa}"

[[plugins.dkim.keys]]
domain = "example.com"
selector = "ed1"
key_file = "{ed}"
algorithm = "ed25519-sha256"

[plugins.dmarc]
nameservers = ["127.0.0.1:53"]
"""


def genkey(tmp_path: Path, capsys, *args: str) -> tuple[int, str, str]:
    code = main(["dkim", "genkey", *args, "-D", str(tmp_path)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_genkey_writes_a_private_key_and_prints_the_record(tmp_path: Path, capsys) -> None:
    code, out, _ = genkey(tmp_path, capsys, "example.com", "sel1")
    assert code == 0
    private = tmp_path / "sel1.private"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = load_key(str(private), "rsa-sha256")
    assert key.bits == 2048
    record = "\n".join(line for line in out.splitlines() if not line.startswith("#"))
    assert record.startswith("sel1._domainkey.example.com. IN TXT ( ")
    strings = re.findall(r'"([^"]*)"', record)
    assert all(len(s) <= 255 for s in strings)
    assert "".join(strings) == key.public_record
    assert (tmp_path / "sel1.txt").read_text().strip() == record

    code, out, _ = genkey(tmp_path, capsys, "example.com", "ed1", "-a", "ed25519")
    assert code == 0
    key = load_key(str(tmp_path / "ed1.private"), "ed25519-sha256")
    assert "k=ed25519" in out and key.public_record in out


def test_genkey_never_overwrites(tmp_path: Path, capsys) -> None:
    assert genkey(tmp_path, capsys, "example.com", "sel1")[0] == 0
    before = (tmp_path / "sel1.private").read_bytes()
    code, _, err = genkey(tmp_path, capsys, "example.com", "sel1")
    assert code == 1 and "exists; not overwritten" in err
    assert (tmp_path / "sel1.private").read_bytes() == before


def test_check_shows_the_keys_and_the_suffix_list(tmp_path: Path, capsys) -> None:
    genkey(tmp_path, capsys, "example.com", "sel1")
    genkey(tmp_path, capsys, "example.com", "ed1", "-a", "ed25519")
    cfg = tmp_path / "miltrd.toml"
    cfg.write_text(
        CHECK_CONFIG.format(user="", rsa=tmp_path / "sel1.private", ed=tmp_path / "ed1.private")
    )
    assert main(["check", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "signs example.com with selector sel1 (rsa-sha256, 2048 bits)" in out
    assert "signs example.com with selector ed1 (ed25519-sha256, 256 bits)" in out
    assert "public suffix list: /usr/share/publicsuffix/public_suffix_list.dat (" in out
    assert "auth_results" in out


def test_check_refuses_a_key_the_service_user_cannot_read(tmp_path: Path, capsys) -> None:
    genkey(tmp_path, capsys, "example.com", "sel1")
    genkey(tmp_path, capsys, "example.com", "ed1", "-a", "ed25519")
    cfg = tmp_path / "miltrd.toml"
    cfg.write_text(
        CHECK_CONFIG.format(
            user='user = "nobody"', rsa=tmp_path / "sel1.private", ed=tmp_path / "ed1.private"
        )
    )
    assert main(["check", "-c", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert re.search(
        r"miltrd.toml:\d+: plugins.dkim.keys\[0\].key_file: .*not readable by user nobody", err
    )


def test_check_refuses_a_suffix_list_the_service_user_cannot_read(tmp_path: Path, capsys) -> None:
    genkey(tmp_path, capsys, "example.com", "sel1")
    genkey(tmp_path, capsys, "example.com", "ed1", "-a", "ed25519")
    psl = tmp_path / "psl.dat"
    psl.write_text("com\nco.uk\n")
    psl.chmod(0o600)
    cfg = tmp_path / "miltrd.toml"
    cfg.write_text(
        CHECK_CONFIG.format(
            user='user = "nobody"', rsa=tmp_path / "sel1.private", ed=tmp_path / "ed1.private"
        )
        + f'psl_file = "{psl}"\n'
    )
    for key in ("sel1", "ed1"):  # only the list is at fault here
        os.chown(tmp_path / f"{key}.private", pwd.getpwnam("nobody").pw_uid, -1)
    assert main(["check", "-c", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert re.search(
        r"miltrd.toml:\d+: plugins.dmarc.psl_file: .*psl.dat: not readable by user nobody", err
    ), err
    assert "key_file" not in err
