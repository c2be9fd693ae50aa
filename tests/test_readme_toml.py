"""Every TOML block in README.md passes ``miltrd check`` as a site would paste it.

Each block goes into the sample config in place of the tables of the same
names, as a site pastes it (a block is often one table, such as
[plugins.spf.when], and relies on the rest of the file, e.g. [internal]); a
block with its own [chain] replaces the sample's [chain] and nothing else, so
it must keep the sample's plugins: a pasted block may leave no
[plugins.NAME] table unused (``check`` would warn). The sendmail_cf
block reads a sendmail.cf built by Sendmail's own m4 from the README's
sendmail.mc lines (the path /etc/mail/sendmail.cf read as that file), so both
blocks are tried together: miltrd must find the socket the X line names.
Blocks whose ``use`` names the reader's own module get it: mysite/exttag.py is
the plugin guide's code from the README, mysite/legacy.py the smallest
pymilter program (a Milter.Base subclass).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .integration.mta import SENDMAIL_CF
from .tools import require

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
SAMPLE = (REPO / "etc" / "miltrd.toml").read_text()


def check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "miltrd", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": f"{config.parent}:{REPO}", "PATH": "/usr/bin:/bin"},
    )


def write_mysite(where: Path) -> None:
    """The reader's own modules the README's blocks name."""
    pkg = where / "mysite"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    code = re.search(r"```python\n(# mysite/exttag.py.*?)```", README, re.S)
    assert code, "the plugin guide's example is gone from README.md"
    (pkg / "exttag.py").write_text(code[1])
    (pkg / "legacy.py").write_text(
        "import Milter\n\n\nclass LegacyMilter(Milter.Base):\n    pass\n"
    )


def into_sample(fragment: str) -> str:
    """The sample config with the fragment's tables in place of its own."""
    text = SAMPLE
    for header in re.findall(r"^(\[[^\]\n]+\])", fragment, re.M):
        section = re.compile(rf"^{re.escape(header)}.*\n(?:(?!\[).*\n|\n)*", re.M)
        text = section.sub("", text)
    return text + "\n" + fragment


def toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", README, re.S)


def sendmail_cf_from_readme(tmp: Path) -> Path:
    require(str(SENDMAIL_CF), "m4")
    start = README.index("In `/etc/mail/sendmail.mc`")
    mc_lines = re.compile(r"```\n(.*?)```", re.S).search(README, start)
    assert mc_lines and "INPUT_MAIL_FILTER(`miltrd'" in mc_lines[1]
    mc = tmp / "sendmail.mc"
    mc.write_text(
        "divert(-1)\ndivert(0)dnl\n"
        f"include(`{SENDMAIL_CF}')dnl\nOSTYPE(`linux')dnl\n" + mc_lines[1] + "MAILER(`smtp')dnl\n"
    )
    cf = tmp / "sendmail.cf"
    with open(cf, "wb") as out:
        subprocess.run(["m4", str(mc)], stdout=out, check=True, cwd=tmp)
    return cf


@pytest.mark.parametrize("index", range(len(toml_blocks())))
def test_readme_toml_block_passes_check(index: int, tmp_path: Path) -> None:
    block = toml_blocks()[index]
    write_mysite(tmp_path)
    if "sendmail_cf = " in block:
        cf = sendmail_cf_from_readme(tmp_path)
        block = block.replace('"/etc/mail/sendmail.cf"', f'"{cf}"')
    config = tmp_path / "miltrd.toml"
    config.write_text(into_sample(block))
    result = check(config)
    assert result.returncode == 0, (
        f"README block:\n{block}\nmiltrd check:\n{result.stdout}{result.stderr}"
    )
    assert result.stdout.startswith(f"{config}: OK")
    assert "not in chain.plugins" not in result.stderr, (
        f"README block leaves a table unused:\n{block}\n{result.stderr}"
    )
    if "sendmail_cf = " in block:
        socket = re.search(
            r"S=(local:[^,]+),", README[README.index("INPUT_MAIL_FILTER(`miltrd'") :]
        )
        assert f"listen: sendmail:miltrd ({socket[1]})" in result.stdout, result.stdout
