-- Drive tests/pymilter/programs/modifier.py (on miltrd's layer or on C
-- pymilter) from OpenDKIM's miltertest. `sock` and `engine` are set with -D.
conn = mt.connect(sock, 20, 0.1)
if conn == nil then error("cannot connect to " .. sock) end
if mt.negotiate(conn, nil, nil, nil) ~= nil then error("negotiate failed") end

if mt.conninfo(conn, "client.example.net", "192.0.2.10") ~= nil then error("conninfo") end
-- The program switches off (@nocallback) the steps it does not use:
-- miltertest must not send those.
function step(flag, f, ...)
    if mt.test_option(conn, flag) then return nil end
    return f(conn, ...)
end
if not mt.test_option(conn, SMFIP_NOHELO) then error("HELO not switched off") end
if not mt.test_option(conn, SMFIP_NOBODY) then error("BODY not switched off") end
if not mt.test_option(conn, SMFIP_NR_CONN) then error("connect is @noreply") end
if mt.mailfrom(conn, "<alice@example.org>") ~= nil then error("mail") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("mail reply") end

if mt.rcptto(conn, "<blocked@example.com>") ~= nil then error("rcpt 1") end
if mt.getreply(conn) ~= SMFIR_REPLYCODE then error("blocked@ not refused with a reply") end
if mt.rcptto(conn, "<bob@example.com>") ~= nil then error("rcpt 2") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("bob@ not accepted") end

if step(SMFIP_NODATA, mt.data) ~= nil then error("data") end
if mt.header(conn, "From", "alice@example.org") ~= nil then error("header") end
if mt.header(conn, "Subject", "via miltertest") ~= nil then error("header") end
if step(SMFIP_NOEOH, mt.eoh) ~= nil then error("eoh") end
if mt.eom(conn) ~= nil then error("eom") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("eom reply") end

if not mt.eom_check(conn, MT_HDRADD, "X-Pymilter", "seen <alice@example.org> (via miltertest)") then
    error("X-Pymilter not added")
end
-- miltertest keeps only the last SMFIR_REPLBODY packet: libmilter sends
-- one per replacebody() call, miltrd one for the whole body (the MTA joins
-- them; the Postfix and Sendmail tests compare the delivered bodies).
-- `engine` (c or miltrd) is set with -D.
local body = "Replaced by the modifier.\r\nSecond chunk.\r\n"
if engine == "c" then body = "Second chunk.\r\n" end
if not mt.eom_check(conn, MT_BODYCHANGE, body) then error("body not replaced") end
mt.disconnect(conn)
mt.echo("pymilter_modifier.lua: all checks passed")
