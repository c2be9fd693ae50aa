"""A pymilter Milter.Base class as a chain member: use = "pymilter:module:Class".

Its verdicts and changes combine with built-in plugins under the chain
rules; when, observe mode, timeouts and on_error apply to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from miltrd.chain import build_runtime
from miltrd.cli.replay import replay_in_process
from miltrd.config import ConfigError, load_text
from miltrd.mta import Envelope
from miltrd.protocol import AddHeader, ChangeSender, ReplaceBody, ReplyCode
from miltrd.pymilter import finder

MESSAGE = b"From: alice@example.org\r\nSubject: chained\r\n\r\nbody\r\n"
MODIFIER = "pymilter:tests.pymilter.programs.modifier:Modifier"


@pytest.fixture(autouse=True)
def layer() -> Iterator[None]:
    yield
    # Loading a pymilter class installs the import finder in this process.
    finder.uninstall()


def run(config: str, recipients: list[str], sender: str = "alice@example.org"):
    runtime = build_runtime(load_text(config))
    env = Envelope(sender=sender, recipients=recipients)
    result, history = asyncio.run(replay_in_process(runtime, MESSAGE, env))
    asyncio.run(runtime.close())
    return result, history


def chain(extra: str = "", member: str = MODIFIER) -> str:
    return f"""
[chain]
plugins = ["modifier", "stamp"]

[plugins.modifier]
use = "{member}"
{extra}

[plugins.stamp]
use = "tests.testplugins:AddHeader"
name = "X-Stamp"
value = "after"
"""


def test_verdicts_and_changes_combine_in_chain_order() -> None:
    result, _ = run(chain(), ["bob@example.com", "blocked@example.com"])
    refused = result.rejected_recipients["blocked@example.com"]
    assert isinstance(refused, ReplyCode) and refused.code == 550
    assert refused.lines[-1] == "100% sure"
    others = [c for c in result.changes if not isinstance(c, ReplaceBody)]
    assert others == [
        AddHeader("X-Pymilter", "seen <alice@example.org> (chained)"),
        ChangeSender("<bounces@example.net>"),
        AddHeader("X-Stamp", "after"),
    ]
    body = b"".join(c.data for c in result.changes if isinstance(c, ReplaceBody))
    assert body == b"Replaced by the modifier.\r\nSecond chunk.\r\n"
    assert result.action == "accept"


def test_observe_mode_changes_nothing() -> None:
    result, history = run(chain('mode = "observe"'), ["bob@example.com", "blocked@example.com"])
    assert result.rejected_recipients == {}
    assert result.changes == [AddHeader("X-Stamp", "after")]
    assert history[-1].plugins["modifier"] == "would-reject"


def test_when_excludes_the_member() -> None:
    config = chain('[plugins.modifier.when]\nsender_domains = ["example.net"]')
    result, history = run(config, ["blocked@example.com", "bob@example.com"])
    assert result.rejected_recipients == {}
    assert result.changes == [AddHeader("X-Stamp", "after")]
    assert history[-1].plugins["modifier"] == "not-applied"


def test_timeout_gets_on_error() -> None:
    config = chain("timeout = 0.3", member="pymilter:tests.pymilter.programs.slow:Sleeper")
    result, _ = run(config, ["bob@example.com"])
    assert result.action == "tempfail" and result.ended_at == "mail"


def test_exception_gets_on_error_reject() -> None:
    config = chain('on_error = "reject"', member="pymilter:tests.pymilter.programs.slow:Raiser")
    result, history = run(config, ["bob@example.com"])
    assert result.action == "reject"
    assert history[-1].plugins["modifier"] == "error->reject"


def test_not_a_milter_class_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"not a subclass of Milter\.Base"):
        load_text(chain(member="pymilter:tests.pymilter.programs.modifier:Milter"))
    with pytest.raises(ConfigError, match="no_such_module"):
        load_text(chain(member="pymilter:no_such_module:X"))
