"""pymilter's own tests and sample, unchanged, on the layer (and on C pymilter).

The sdist's testmime.py, testsample.py and testutils.py run under
``miltrd pymilter -m unittest``; ``Milter`` is the layer, while the sdist's
pure-Python helpers (``Milter.utils``, ``Milter.dynip`` ...) and ``mime.py``
are its own. testsample.py imports ``template``, which the sdist does not
ship: tests/pymilter/programs/template.py stands in for it. Where the C
pymilter is importable, the same tests run on it and the per-test results
must agree. sample.py is served on the layer and on C pymilter and given
the same infected message; both must defang it the same way.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from miltrd.mta import Envelope, MilterClient, open_milter, replay
from miltrd.protocol import Accept, ReplaceBody

from .runner import PROGRAMS, REPO, Program, c_pymilter_available
from .sdist import unpack

SUITES = ["testmime", "testsample", "testutils"]
START = re.compile(r"^(test\w+) \(([\w.]+)\)(?: \.\.\. |\n)", re.M)
OUTCOME = re.compile(r"(?:^|\.\.\. )(ok|FAIL|ERROR|expected failure|skipped[^\n]*)$", re.M)


def run(cmd: list[str], cwd: Path, layer: bool) -> subprocess.CompletedProcess[str]:
    path = [str(PROGRAMS)] + ([str(REPO)] if layer else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path), HOME=str(cwd))
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def results(output: str) -> dict[str, str]:
    """unittest -v's verdict per test id (output of a test may come between)."""
    found: dict[str, str] = {}
    for m in START.finditer(output):
        name, where = m.groups()
        test_id = where if where.endswith("." + name) else f"{where}.{name}"
        outcome = OUTCOME.search(output, m.start())
        if outcome is not None:
            found[test_id] = outcome.group(1)
    return found


def layer_unittest(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    root = unpack(tmp_path / "layer")
    cmd = [sys.executable, "-m", "miltrd", "pymilter", "-m", "unittest", "-v", *SUITES]
    return run(cmd, root, layer=True)


def test_pymilter_tests_pass_on_the_layer(tmp_path: Path) -> None:
    done = layer_unittest(tmp_path)
    out = done.stderr
    assert done.returncode == 0, out[-4000:]
    assert re.search(r"^Ran (\d+) tests", out, re.M)
    assert "OK (expected failures=1)" in out  # testutils marks testParseAddress so
    got = results(out)
    for name in ("testCtx", "testDefang", "testDefang2", "testHeader", "testParse", "testTemplate"):
        assert got[f"testsample.BMSMilterTestCase.{name}"] == "ok"
    assert got["testmime.MimeTestCase.testDefang"] == "ok"
    assert len(got) >= 20


def test_same_results_as_c_pymilter(tmp_path: Path) -> None:
    if not c_pymilter_available():
        pytest.skip("C pymilter is not installed: nothing to compare with")
    layer = results(layer_unittest(tmp_path).stderr)
    root = unpack(tmp_path / "c")
    c_run = run([sys.executable, "-m", "unittest", "-v", *SUITES], root, layer=False)
    c = results(c_run.stderr)
    assert c and c == layer


def test_the_layer_is_what_import_milter_gives(tmp_path: Path) -> None:
    root = unpack(tmp_path / "which")
    probe = root / "which.py"
    probe.write_text(
        "import Milter, milter, Milter.testctx, Milter.utils\n"
        "print(Milter.__name__, milter.__name__, Milter.testctx.__name__)\n"
        "print(Milter.utils.__file__)\n"
    )
    done = run([sys.executable, "-m", "miltrd", "pymilter", str(probe)], root, layer=True)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first == "miltrd.pymilter miltrd.pymilter.milter miltrd.pymilter.testctx"
    assert second == str(root / "Milter" / "utils.py")  # the sdist's own helper


def test_test_py_fails_alike(tmp_path: Path) -> None:
    """test.py imports testgrey, testcfg and testpolicy, which the sdist does
    not ship: it cannot run on either engine, and fails the same way."""
    root = unpack(tmp_path / "testpy")
    done = run([sys.executable, "-m", "miltrd", "pymilter", "test.py"], root, layer=True)
    assert done.returncode != 0
    assert "No module named 'testgrey'" in done.stderr
    if c_pymilter_available():
        c_root = unpack(tmp_path / "testpy-c")
        c_done = run([sys.executable, "test.py"], c_root, layer=False)
        assert c_done.returncode != 0 and "No module named 'testgrey'" in c_done.stderr


def _virus(root: Path) -> bytes:
    with zipfile.ZipFile(root / "test" / "virus.zip") as zf:
        zf.setpassword(b"denatured")
        return zf.read("virus1")


def _drive_sample(sock: Path, raw: bytes) -> tuple[object, bytes]:
    async def go() -> tuple[object, bytes]:
        reader, writer = await open_milter(f"local:{sock}")
        client = MilterClient(reader, writer)
        try:
            result = await replay(
                client,
                raw,
                Envelope(sender="spam@adv.com", recipients=["victim@lamb.com"], auth="batman"),
            )
        finally:
            await client.close()
        body = b"".join(c.data for c in result.changes if isinstance(c, ReplaceBody))
        return result.final, body

    return asyncio.run(go())


@pytest.mark.parametrize("engine", ["miltrd", "c"])
def test_sample_py_defangs_a_virus(tmp_path: Path, engine: str) -> None:
    root = unpack(tmp_path / engine)
    sock = root / "pythonsock"
    prog = Program(
        root / "sample.py", engine=engine, unix_path=sock, cwd=root, env={"HOME": str(root)}
    )
    try:
        raw = _virus(root).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        final, body = _drive_sample(sock, raw)
    finally:
        prog.stop()
    assert isinstance(final, Accept), prog.log()
    assert b"LOVE-LETTER-FOR-YOU.TXT.vbs" in body and b"WARNING" in body
    assert b"sample milter shutdown" in prog.log().encode()
