package ike

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/mifike/mifike/internal/wire"
)

// cookieSecrets are the responder's COOKIE secrets (RFC 7296 §2.6): "the
// responder should change the value of <secret> frequently", and a cookie
// begins with the version of the secret it was made with, so that after a
// change "cookies computed from the previous secret" are still accepted
// for a short while (grace) while the new secret makes every new cookie.
type cookieSecrets struct {
	version   uint8
	cur, prev [32]byte
	prevUntil time.Time // cookies of prev are taken before then
	next      time.Time // when cur is replaced
}

// cookieInfo is what a cookie says besides proving the address (RFC 8019
// §7.1.1.3): whether a puzzle came with it, how many zero bits, and with
// which PRF. It is under the cookie's MAC, so the initiator cannot change
// it.
type cookieInfo struct {
	bits uint8 // 0: no puzzle
	prf  wire.PRFID
}

// cookieLen: <VersionIDofSecret> | <AdditionalInfo> | MAC (RFC 8019
// §7.1.1.3), well under the 64 octets RFC 7296 §2.6 allows.
const cookieLen = 1 + 3 + sha256.Size

// rotateCookieSecret replaces the secret when its time has come. It runs
// whenever a cookie is made or checked rather than from a timer: the
// outcome is what a timer would give (a cookie of the previous secret is
// taken until its grace ends, one of any older secret never), and an idle
// engine is not woken every lifetime for it. Randomness comes from
// Config.Rand only.
func (e *Engine) rotateCookieSecret() {
	c := &e.cookies
	if c.next.IsZero() {
		c.next = e.now.Add(e.cfg.CookieSecretLifetime)
		return
	}
	if e.now.Before(c.next) {
		return
	}
	// The grace runs from when the change was due, not from now: after
	// a quiet spell longer than the grace (at most the lifetime) the old
	// secret's cookies are not taken at all.
	c.prev, c.prevUntil = c.cur, c.next.Add(e.cfg.CookieGrace)
	c.version++
	e.random(c.cur[:])
	c.next = e.now.Add(e.cfg.CookieSecretLifetime)
}

// makeCookie is the COOKIE for a request (RFC 7296 §2.6, RFC 8019
// §7.1.1.3): version | info | HMAC-SHA-256(secret, version | info | SPIi |
// IPi | Ni). A keyed MAC rather than the RFC's plain Hash(... | secret):
// the same idea, without relying on the hash for a MAC's properties.
func (e *Engine) makeCookie(ni []byte, ip netip.Addr, spiI uint64, info cookieInfo) []byte {
	e.rotateCookieSecret()
	return cookieMAC(e.cookies.version, &e.cookies.cur, info, ni, ip, spiI)
}

func cookieMAC(version uint8, secret *[32]byte, info cookieInfo, ni []byte, ip netip.Addr, spiI uint64) []byte {
	out := make([]byte, 4, cookieLen)
	out[0], out[1] = version, info.bits
	binary.BigEndian.PutUint16(out[2:], uint16(info.prf))
	m := hmac.New(sha256.New, secret[:])
	m.Write(out)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], spiI)
	m.Write(b[:])
	a := ip.Unmap().AsSlice()
	m.Write([]byte{byte(len(a))})
	m.Write(a)
	m.Write(ni)
	return m.Sum(out)
}

// checkCookie verifies the COOKIE a request begins with (RFC 7296 §2.6:
// it is the first payload) against the current secret, or the previous one
// during its grace. ok is false for no cookie and for a stale, forged or
// foreign one; the caller then asks for a fresh cookie (RFC 8019 §7.1.4).
func (e *Engine) checkCookie(m *message, ni []byte, ip netip.Addr) (info cookieInfo, cookie []byte, ok bool) {
	if len(m.payloads) == 0 {
		return info, nil, false
	}
	n, isNotify := m.payloads[0].(*wire.Notify)
	if !isNotify || n.NotifyType != wire.NotifyCookie || len(n.Data) != cookieLen {
		return info, nil, false
	}
	e.rotateCookieSecret()
	c := &e.cookies
	var secret *[32]byte
	switch v := n.Data[0]; {
	case v == c.version:
		secret = &c.cur
	case v == c.version-1 && e.now.Before(c.prevUntil):
		secret = &c.prev
	default:
		return info, nil, false
	}
	info = cookieInfo{bits: n.Data[1], prf: wire.PRFID(binary.BigEndian.Uint16(n.Data[2:]))}
	want := cookieMAC(n.Data[0], secret, info, ni, ip, m.SPIi)
	if subtle.ConstantTimeCompare(n.Data, want) != 1 {
		return cookieInfo{}, nil, false
	}
	return info, n.Data, true
}
