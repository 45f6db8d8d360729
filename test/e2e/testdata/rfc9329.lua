-- RFC 9329 (TCP encapsulation of IKE and ESP) for tshark: Wireshark 4.0,
-- Debian 12's, has no dissector for it (its "tcpencap" is Cisco's IPsec
-- over TCP, with a trailer). This one follows the RFC: the "IKETCP"
-- stream prefix (§4), then messages each led by a 16-bit Length that
-- counts itself (§3); a message whose first four octets are zero is IKE
-- behind the non-ESP marker, any other ESP. It hands them to Wireshark's
-- own isakmp and esp dissectors, so decryption and checksums are theirs.
-- Used by test/e2e (TestTCPEncapsulationOnOneInterface) with
-- tshark -X lua_script:testdata/rfc9329.lua.

local p = Proto("rfc9329", "TCP Encapsulation of IKE and IPsec Packets (RFC 9329)")
local f_len = ProtoField.uint16("rfc9329.length", "Length")
local f_prefix = ProtoField.string("rfc9329.prefix", "Stream prefix")
local f_kind = ProtoField.string("rfc9329.kind", "Carries")
p.fields = { f_len, f_prefix, f_kind }

local isakmp = Dissector.get("isakmp")
local esp = Dissector.get("esp")

function p.dissector(tvb, pinfo, tree)
  local n = tvb:len()
  local off = 0
  if n >= 6 and tvb(0, 6):string() == "IKETCP" then
    tree:add(p, tvb(0, 6)):add(f_prefix, tvb(0, 6))
    off = 6
  end
  while off < n do
    if n - off < 2 then
      pinfo.desegment_offset = off
      pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
      return n
    end
    local len = tvb(off, 2):uint()
    if len < 3 then
      return 0 -- not RFC 9329 framing (§3.1: the stream is broken)
    end
    if n - off < len then
      pinfo.desegment_offset = off
      pinfo.desegment_len = len - (n - off)
      return n
    end
    local t = tree:add(p, tvb(off, len))
    t:add(f_len, tvb(off, 2))
    local body = tvb(off + 2, len - 2):tvb()
    if body:len() >= 4 and body(0, 4):uint() == 0 then
      t:add(f_kind, "IKE")
      if body:len() > 4 then
        isakmp:call(body(4):tvb(), pinfo, tree)
      end
    elseif body:len() == 1 and body(0, 1):uint() == 0xff then
      t:add(f_kind, "NAT keepalive")
    else
      t:add(f_kind, "ESP")
      esp:call(body, pinfo, tree)
    end
    off = off + len
  end
  return off
end

DissectorTable.get("tcp.port"):add(4500, p)
