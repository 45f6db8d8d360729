// Package xfrm is mifike's kernel data plane: Child SAs become Linux XFRM
// states and policies, installed over NETLINK_XFRM (RFC 4301's SAD and
// SPD, as the kernel keeps them), so ESP never crosses user space.
//
// # One XFRM interface per VPN
//
// Several IKE SAs to one gateway may negotiate the same selectors: the
// clones of an end user's IKE SA (RFC 7791), one per interface, that
// share an inner address, or simply two VPNs that both protect
// 0.0.0.0/0. Plain XFRM policies cannot hold two identical selectors.
// So every IKE SA with a tunnel-mode Child SA gets its own XFRM
// interface, mifike-vN, with its own if_id (0x6d660000+N); its states
// and policies carry that if_id and match only traffic routed through
// that device (Linux Documentation/networking/xfrm_device.rst,
// "XFRM interfaces"). Routing then chooses the VPN:
//
//   - The VPN's virtual IPs go on its device, and a rule "from <vip>
//     lookup 0x6d660000+N" (priority 0x6d65) sends what leaves from
//     them to the VPN's own table, where its remote selectors route into
//     its device. So `ping -I 10.99.0.3` leaves through the VPN that owns
//     10.99.0.3, whichever other VPN protects the same prefix.
//   - The shared table 0x6d66, consulted by everything not marked 0x6d66
//     (rule priority 0x6d66, as in the userspace data plane), routes each
//     protected prefix into the first VPN that protects it, with that
//     VPN's virtual IP as source: unbound sockets and forwarded traffic
//     use it.
//   - Every VPN's outbound states mark their outer ESP packets
//     0xNNNN6d66 (XFRMA_SET_MARK, NNNN the VPN's number), and our IKE
//     sockets carry 0x6d66; the shared rule matches "not fwmark
//     0x6d66/0xffff", so neither is captured by a protected 0.0.0.0/0.
//   - A VPN pinned to an interface (MOBIKE, the interface manager) gets
//     a rule "fwmark 0xNNNN6d66 lookup 0x6d670000+N" (priority 0x6d64)
//     and there a route to the peer through that interface, via the next
//     hop the main table has on it. So the VPN's ESP leaves there even
//     when the main table prefers another interface. (The XFRM
//     interface's own link cannot do this: since Linux 5.18 the outer
//     route lookup takes it only as a VRF master.) A move re-pins.
//
// Child SAs of one IKE SA with the same selectors (an SA and the one
// that rekeys it) share policies through one reqid (0x6d660000+M). The
// kernel sends with the newest outbound state of a reqid, and a
// responder's rekeyed SA gets its outbound state only once it may send
// (RFC 7296 §2.8), so rekeys are make-before-break.
//
// Transport-mode SAs need no device: their policies have no if_id and
// cover host-to-host traffic. Our IKE sockets have per-socket bypass
// policies so that such policies never cover IKE itself.
//
// MOBIKE moves (RFC 4555) use XFRM_MSG_MIGRATE when the kernel has it:
// the states keep keys, counters and sequence numbers. Without it (or for
// an SA that shares its reqid during a rekey, or drops UDP encapsulation)
// the new states go in next to the old ones, with the replay window and
// the sequence numbers carried over, the policies switch, and only then
// the old states go.
//
// Traps (start_action trap) are outbound policies whose template no
// state fills (trap.go): a tunnel-mode trap's on the if_id of its own
// device, mifike-v0, where its prefixes are routed below the VPNs'
// routes; a transport-mode trap's with a mark of their own and a
// priority below every Child SA policy's. A packet they match makes the
// kernel send XFRM_MSG_ACQUIRE, which the monitor socket
// (XFRMNLGRP_ACQUIRE) hears and Config.OnAcquire passes on.
//
// Everything we install carries a reqid, if_id, table or device name of
// ours, so Close removes it all and Open removes what a crashed run left
// (trap policies and their larval states included).
//
// # What the kernel needs
//
//   - xfrm_user (CONFIG_XFRM_USER): the NETLINK_XFRM interface itself.
//   - esp4 / esp6 (CONFIG_INET_ESP, CONFIG_INET6_ESP): ESP over IPv4 /
//     IPv6 outer addresses.
//   - xfrm_interface (CONFIG_XFRM_INTERFACE): every tunnel-mode Child SA.
//   - CONFIG_XFRM_MIGRATE: moves in place; without it moves re-install.
//   - ESP in UDP (RFC 3948): built into esp4 (esp6 from Linux 5.8), turned
//     on per socket with UDP_ENCAP_ESPINUDP on the NAT-T socket.
//   - the algorithms' crypto modules: rfc4106(gcm(aes)) (gcm, ghash,
//     aes), rfc7539esp(chacha20,poly1305) (chacha20poly1305), cbc(aes)
//     with hmac(sha256|sha384|sha512|sha1) (cbc, sha256, sha512, sha1),
//     plus seqiv/echainiv for the IVs, which need an stdrng (drbg).
//   - XFRMA_SET_MARK (Linux 4.14) and XFRMA_IF_ID (Linux 4.19): Linux 5.x
//     or later is assumed; Debian 12's 6.1 is what the VM test boots.
//
// Probe checks the first, second and third; data_plane: auto uses it.
package xfrm
