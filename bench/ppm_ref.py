"""The reference filter on purepythonmilter (asyncio)."""

import sys

from purepythonmilter import AppendHeader, Continue, PurePythonMilter, VerdictOrContinue


# Return annotations tell purepythonmilter to reply to every callback, like
# the other reference filters.
async def nothing(cmd) -> VerdictOrContinue:
    return Continue()


async def eom(cmd) -> VerdictOrContinue:
    return Continue(manipulations=[AppendHeader(headername="X-Bench", headertext="ppm")])


if __name__ == "__main__":
    milter = PurePythonMilter(
        hook_on_connect=nothing,
        hook_on_helo=nothing,
        hook_on_mail_from=nothing,
        hook_on_rcpt_to=nothing,
        hook_on_data=nothing,
        hook_on_header=nothing,
        hook_on_end_of_headers=nothing,
        hook_on_body_chunk=nothing,
        hook_on_end_of_message=eom,
        can_add_headers=True,
    )
    milter.run_server(host="127.0.0.1", port=int(sys.argv[1]))
