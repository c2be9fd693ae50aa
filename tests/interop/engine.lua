-- Drive miltrd's filter-side engine from OpenDKIM's miltertest.
conn = mt.connect(sock, 20, 0.1)
if conn == nil then error("cannot connect to " .. sock) end

if mt.negotiate(conn, nil, nil, nil) ~= nil then error("negotiate failed") end
if not mt.test_action(conn, SMFIF_ADDHDRS) then error("ADDHDRS not requested") end
if not mt.test_action(conn, SMFIF_CHGBODY) then error("CHGBODY not requested") end
if mt.test_action(conn, SMFIF_QUARANTINE) then error("QUARANTINE requested but not needed") end
if not mt.test_option(conn, SMFIP_NR_HDR) then error("NR_HDR not requested") end

if mt.conninfo(conn, "client.example.net", "192.0.2.10") ~= nil then error("conninfo") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("connect reply") end
if mt.helo(conn, "client.example.net") ~= nil then error("helo") end

mt.macro(conn, SMFIC_MAIL, "{auth_authen}", "alice")
if mt.mailfrom(conn, "<sender@example.net>", "BODY=8BITMIME") ~= nil then error("mail") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("mail reply") end

if mt.rcptto(conn, "<reject@example.com>") ~= nil then error("rcpt 1") end
if mt.getreply(conn) ~= SMFIR_REPLYCODE then error("reject@ not rejected") end
if mt.rcptto(conn, "<gone@example.com>") ~= nil then error("rcpt 2") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("gone@ not accepted") end

if mt.data(conn) ~= nil then error("data") end
if mt.header(conn, "From", "sender@example.net") ~= nil then error("header") end
if mt.header(conn, "Subject", "original") ~= nil then error("header") end
if mt.eoh(conn) ~= nil then error("eoh") end
if mt.bodystring(conn, "hello world\r\n") ~= nil then error("body") end
if mt.eom(conn) ~= nil then error("eom") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("eom reply") end

if not mt.eom_check(conn, MT_HDRADD, "X-Engine", "seen 13 body bytes") then error("X-Engine") end
if not mt.eom_check(conn, MT_HDRADD, "X-Auth", "alice") then error("X-Auth macro") end
if not mt.eom_check(conn, MT_HDRINSERT, "X-First", "top") then error("X-First") end
if not mt.eom_check(conn, MT_HDRCHANGE, "Subject", "rewritten") then error("Subject") end
if not mt.eom_check(conn, MT_RCPTADD, "<added@example.com>") then error("rcpt add") end
if not mt.eom_check(conn, MT_RCPTDELETE, "<gone@example.com>") then error("rcpt del") end
if not mt.eom_check(conn, MT_BODYCHANGE, "HELLO WORLD\r\n") then error("body change") end

-- A second message on the same connection starts clean.
if mt.mailfrom(conn, "<other@example.net>") ~= nil then error("mail 2") end
if mt.rcptto(conn, "<x@example.com>") ~= nil then error("rcpt 3") end
if mt.bodystring(conn, "second\r\n") ~= nil then error("body 2") end
if mt.eom(conn) ~= nil then error("eom 2") end
if not mt.eom_check(conn, MT_HDRADD, "X-Engine", "seen 8 body bytes") then error("second body") end
if not mt.eom_check(conn, MT_HDRADD, "X-Auth", "none") then error("macros leaked into message 2") end

mt.disconnect(conn)
mt.echo("engine.lua: all checks passed")
