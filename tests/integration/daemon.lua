-- OpenDKIM's miltertest as an independent MTA side against a running miltrd.
conn = mt.connect(sock, 20, 0.1)
if conn == nil then error("cannot connect to " .. sock) end
if mt.negotiate(conn, nil, nil, nil) ~= nil then error("negotiate") end
-- miltrd asks only for what its chain needs.
if not mt.test_action(conn, SMFIF_ADDHDRS) then error("ADDHDRS not requested") end
if not mt.test_action(conn, SMFIF_CHGBODY) then error("CHGBODY not requested") end
if mt.test_action(conn, SMFIF_DELRCPT) then error("DELRCPT requested but unused") end
if not mt.test_option(conn, SMFIP_NOUNKNOWN) then error("UNKNOWN not switched off") end
if not mt.test_option(conn, SMFIP_NR_MAIL) then error("MAIL not reply-less") end

if mt.conninfo(conn, "client.example.net", "192.0.2.10") ~= nil then error("conninfo") end
if mt.helo(conn, "client.example.net") ~= nil then error("helo") end
if mt.mailfrom(conn, "<sender@example.net>") ~= nil then error("mail") end
if mt.rcptto(conn, "<bad@example.com>") ~= nil then error("rcpt bad") end
if mt.getreply(conn) ~= SMFIR_REPLYCODE then error("bad@ not rejected") end
if mt.rcptto(conn, "<good@example.com>") ~= nil then error("rcpt good") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("good@ not accepted") end
if mt.bodystring(conn, "hello world\r\n") ~= nil then error("body") end
if mt.eom(conn) ~= nil then error("eom") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("eom reply") end
if not mt.eom_check(conn, MT_HDRADD, "X-Stamp", "yes") then error("X-Stamp missing") end
if not mt.eom_check(conn, MT_BODYCHANGE, "HELLO WORLD\r\n") then error("body not replaced") end
mt.disconnect(conn)
mt.echo("daemon.lua: all checks passed")
