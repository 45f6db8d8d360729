package config

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mifike/mifike/internal/eap"
	"github.com/mifike/mifike/internal/ike"
	"github.com/mifike/mifike/internal/ikeauth"
	"github.com/mifike/mifike/internal/revocation"
	"github.com/mifike/mifike/internal/ts"
	"github.com/mifike/mifike/internal/wire"
)

// Pools are the address pools Build made, by name, and the lease
// registry they share (every pool of one engine leases from one registry,
// so no address is handed out twice whatever the prefixes; RFC 7296
// §2.19).
type Pools struct {
	ByName map[string]*ike.Pool
	Leases *ike.Leases
}

// Build turns the configuration into the engine's connections: it reads
// keys and certificates, parses identities and traffic selectors, makes
// the address pools and runs each connection's Validate. Errors name the
// line of the field that referenced a file.
//
// prev is what the previous Build returned, on a reload (nil at start).
// Its registry carries over: a pool the new file renames, resizes or drops
// may still have addresses held by running SAs, and no new pool hands
// those out until they are released. A pool of prev whose name and prefix
// are unchanged is reused, so a reload keeps its leases; a Build that
// succeeds then writes the new DNS servers into it, so call Build where
// the engine that uses prev is not running concurrently (its own
// goroutine). The returned ByName holds exactly the configured pools.
func (c *Config) Build(prev *Pools) ([]*ike.Connection, *Pools, error) {
	b := &builder{p: &parser{file: c.File}, pem: map[string][]byte{}}
	pools := &Pools{ByName: map[string]*ike.Pool{}, Leases: ike.NewLeases()}
	var old map[string]*ike.Pool
	if prev != nil && prev.Leases != nil {
		pools.Leases, old = prev.Leases, prev.ByName
	}
	dns := map[*ike.Pool][]netip.Addr{} // for reused pools, written on success
	for _, pc := range c.Pools {
		if op := old[pc.Name]; op != nil && op.Prefix == pc.Addrs.Masked() && op.Leases() == pools.Leases {
			if !slices.Equal(op.DNS, pc.DNS) {
				dns[op] = slices.Clone(pc.DNS)
			}
			pools.ByName[pc.Name] = op
			continue
		}
		np, err := pools.Leases.NewPool(pc.Name, pc.Addrs, slices.Clone(pc.DNS)...)
		if err != nil {
			b.p.fail(pc.Line, "pools."+pc.Name, "%v", err)
			continue
		}
		pools.ByName[pc.Name] = np
	}
	var conns []*ike.Connection
	for _, cc := range c.Connections {
		if ic := b.conn(cc, pools.ByName); ic != nil {
			conns = append(conns, ic)
		}
	}
	if err := b.p.err(); err != nil {
		return nil, nil, err
	}
	for p, d := range dns {
		p.DNS = d
	}
	return conns, pools, nil
}

type builder struct {
	p   *parser
	pem map[string][]byte // files already read in this Build
}

// where is r, or the connection's line and a constructed field for a
// Config that was not made by Parse.
func where(r ref, cc *ConnConfig, field string) (int, string) {
	if r.field != "" {
		return r.line, r.field
	}
	return cc.Line, "connections." + cc.Name + "." + field
}

func (b *builder) read(path string, r ref, cc *ConnConfig, field string) []byte {
	if data, ok := b.pem[path]; ok {
		return data
	}
	data, err := os.ReadFile(path)
	if err != nil {
		line, f := where(r, cc, field)
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		b.p.fail(line, f, "cannot read %s: %v", path, err)
		return nil
	}
	b.pem[path] = data
	return data
}

func (b *builder) certs(paths []string, refs []ref, cc *ConnConfig, field string) []*x509.Certificate {
	var out []*x509.Certificate
	for i, path := range paths {
		r := ref{}
		if i < len(refs) {
			r = refs[i]
		}
		data := b.read(path, r, cc, field)
		if data == nil {
			continue
		}
		cs, err := ikeauth.LoadCertificates(data)
		if err != nil {
			line, f := where(r, cc, field)
			b.p.fail(line, f, "%s: %s", path, strings.TrimPrefix(err.Error(), "ikeauth: "))
			continue
		}
		out = append(out, cs...)
	}
	return out
}

func authKind(s string) ike.AuthKind {
	switch {
	case s == "psk":
		return ike.AuthPSK
	case strings.HasPrefix(s, "eap"):
		return ike.AuthEAP
	}
	return ike.AuthPubkey
}

// eapMethods are the EAP methods local.auth allows, most preferred first
// (nil: whatever the credentials allow).
func eapMethods(auth string) []eap.Type {
	switch auth {
	case "eap-mschapv2":
		return []eap.Type{eap.TypeMSCHAPv2}
	case "eap-md5":
		return []eap.Type{eap.TypeMD5Challenge}
	case "eap-tls":
		return []eap.Type{eap.TypeTLS}
	}
	return nil
}

// idText is an identity as an EAP identity or a TLS server name: the
// text of the ID, without the @ that marks an FQDN.
func idText(id string) string { return strings.TrimPrefix(id, "@") }

// eapPeer makes our side of an EAP authentication (local.auth eap...).
func (b *builder) eapPeer(cc *ConnConfig, ic *ike.Connection) {
	pc := &eap.PeerConfig{Identity: []byte(idText(cc.Local.ID)), Password: slices.Clone(cc.Local.Password), Methods: eapMethods(cc.Local.Auth)}
	if cc.Local.EAPID != "" {
		pc.Identity = []byte(cc.Local.EAPID)
	}
	if ic.Key != nil && len(ic.Certs) > 0 {
		// EAP-TLS: our certificate, and the server's checked against
		// eap_cacerts (default remote.cacerts) and aaa_id (default the
		// gateway's identity), as strongSwan's aaa_identity.
		cert := &tls.Certificate{PrivateKey: ic.Key}
		for _, c := range ic.Certs {
			cert.Certificate = append(cert.Certificate, c.Raw)
		}
		pc.Certificate = cert
		cas := b.certs(cc.Local.EAPCACerts, cc.Local.eapCARefs, cc, "local.eap_cacerts")
		if len(cas) == 0 {
			cas = b.certs(cc.Remote.CACerts, cc.Remote.caRefs, cc, "remote.cacerts")
		}
		pool := x509.NewCertPool()
		for _, c := range cas {
			pool.AddCert(c)
		}
		pc.RootCAs = pool
		pc.ServerName = cc.Local.AAAID
		if pc.ServerName == "" {
			pc.ServerName = idText(cc.Remote.ID)
		}
		if len(cas) == 0 || pc.ServerName == "" || pc.ServerName == "%any" {
			line, f := where(cc.Local.idRef, cc, "local.aaa_id")
			b.p.fail(line, f, "EAP-TLS checks the EAP server's certificate: give local.eap_cacerts (or remote.cacerts) and local.aaa_id, the name in that certificate")
		}
		// Our own AUTH is the EAP one; the certificate is EAP-TLS's.
		ic.Key, ic.Certs = nil, nil
	}
	ic.EAP = pc
}

func (b *builder) conn(cc *ConnConfig, pools map[string]*ike.Pool) *ike.Connection {
	errs := len(b.p.errs)
	field := "connections." + cc.Name
	ic := &ike.Connection{
		Name:                cc.Name,
		LocalAddrs:          slices.Clone(cc.LocalAddrs),
		RemoteAddrs:         slices.Clone(cc.RemoteAddrs),
		RemotePort:          cc.RemotePort,
		LocalAuth:           authKind(cc.Local.Auth),
		RemoteAuth:          authKind(cc.Remote.Auth),
		PSK:                 slices.Clone(cc.PSK),
		RSAPSS:              cc.RSAPSS,
		ClassicSignatures:   cc.ClassicSignatures,
		IKE:                 cc.IKE,
		RekeyTime:           cc.RekeyTime,
		ReauthTime:          cc.ReauthTime,
		OverTime:            cc.OverTime,
		RandTime:            cc.RandTime,
		DPDDelay:            cc.DPDDelay,
		LivenessWindow:      cc.LivenessWindow,
		PathProbe:           spreadProbe(cc),
		MOBIKE:              cc.MOBIKE,
		Window:              uint32(cc.IKEWindow),
		SendInitialContact:  cc.SendInitialContact,
		PreferPeerProposals: cc.PreferPeerProposals,
		ForceEncap:          cc.Encap,
		TCP:                 cc.TCP,
		TCPPort:             cc.TCPPort,
		TCPFallbackAfter:    cc.TCPFallbackAfter,
		Fragmentation:       cc.Fragmentation,
		FragmentSize:        cc.FragmentSize,
		NoChildless:         cc.NoChildless,
		NoRedirect:          cc.Redirect.NoFollow,
		RedirectTo:          cc.Redirect.To,
		ReturnRoutability:   cc.ReturnRoutability,
		NoNATT:              cc.NoNATT,
		Clone:               cc.Clone.Enable,
		MaxIKESAs:           cc.Clone.MaxIKESAs,
		MaxChildSAs:         cc.Clone.MaxChildSAs,
		Draft00Clone:        cc.Clone.Draft00,
		CloneVIPs:           cc.Clone.OwnVIPs,
	}
	if cc.Interfaces != nil {
		ic.TCPIfaces = slices.Clone(cc.Interfaces.TCP)
	}

	if ic.LocalAuth == ike.AuthPubkey || ic.LocalAuth == ike.AuthEAP && len(cc.Local.Certs) > 0 {
		ic.Certs = b.certs(cc.Local.Certs, cc.Local.certRefs, cc, "local.certs")
		if cc.Local.Key != "" {
			if data := b.read(cc.Local.Key, cc.Local.keyRef, cc, "local.key"); data != nil {
				key, err := ikeauth.LoadPrivateKey(data)
				if err != nil {
					line, f := where(cc.Local.keyRef, cc, "local.key")
					b.p.fail(line, f, "%s: %s", cc.Local.Key, strings.TrimPrefix(err.Error(), "ikeauth: "))
				} else {
					ic.Key = key
				}
			}
		}
		if ic.Key != nil && len(ic.Certs) > 0 {
			// The certificate of our key is the end entity, wherever it
			// was listed.
			i := slices.IndexFunc(ic.Certs, func(c *x509.Certificate) bool { return samePublic(ic.Key, c) })
			if i < 0 {
				line, f := where(cc.Local.keyRef, cc, "local.key")
				b.p.fail(line, f, "%s does not belong to any certificate in local.certs; give the key of our own certificate", cc.Local.Key)
			} else {
				ee := ic.Certs[i]
				ic.Certs = append([]*x509.Certificate{ee}, slices.Delete(ic.Certs, i, i+1)...)
			}
		}
	}

	idLine, idField := where(cc.Local.idRef, cc, "local.id")
	switch {
	case cc.Local.ID != "":
		t, data, err := ikeauth.ParseID(cc.Local.ID)
		if err != nil {
			b.p.fail(idLine, idField, "%s", strings.TrimPrefix(err.Error(), "ikeauth: "))
			break
		}
		ic.LocalID = ike.ID{Type: t, Data: data}
		if ic.LocalAuth == ike.AuthPubkey && len(ic.Certs) > 0 {
			if err := ikeauth.MatchID(ic.Certs[0], &wire.ID{IDType: t, Data: data}); err != nil {
				b.p.fail(idLine, idField, "%q is not in our certificate (subject %q); use its subject or one of its subjectAltNames", cc.Local.ID, ic.Certs[0].Subject.String())
			}
		}
	case ic.LocalAuth == ike.AuthPubkey && len(ic.Certs) > 0:
		// As strongSwan: without an id, we are the certificate's subject.
		if len(ic.Certs[0].Subject.Names) == 0 {
			b.p.fail(idLine, idField, "required: our certificate has an empty subject; give one of its subjectAltNames")
			break
		}
		ic.LocalID = ike.ID{Type: wire.IDDERASN1DN, Data: slices.Clone(ic.Certs[0].RawSubject)}
	}

	if ic.RemoteAuth == ike.AuthPubkey {
		ic.CAs = b.certs(cc.Remote.CACerts, cc.Remote.caRefs, cc, "remote.cacerts")
		b.revocation(cc, ic)
	}
	if ic.LocalAuth == ike.AuthEAP && isEAPPeer(cc.Local.Auth) {
		b.eapPeer(cc, ic)
	}
	if id := cc.Remote.ID; id != "" && id != "%any" {
		t, data, err := ikeauth.ParseID(id)
		if err != nil {
			line, f := where(cc.Remote.idRef, cc, "remote.id")
			b.p.fail(line, f, "%s", strings.TrimPrefix(err.Error(), "ikeauth: "))
		} else {
			ic.RemoteID = ike.ID{Type: t, Data: data}
		}
	}

	for _, name := range cc.Pools {
		if p := pools[name]; p != nil {
			ic.Pools = append(ic.Pools, p)
		} else if !slices.ContainsFunc(b.p.errs, func(e *Error) bool { return e.Field == "pools."+name }) {
			b.p.fail(cc.Line, field+".pools", "no pool %q", name)
		}
	}
	for _, a := range cc.VIPs {
		if a.Is4() {
			ic.RequestVIP4 = true
		} else {
			ic.RequestVIP6 = true
		}
	}

	for _, ch := range cc.Children {
		ic.Children = append(ic.Children, b.child(ch, field))
	}

	if len(b.p.errs) > errs {
		return nil
	}
	if err := ic.Validate(); err != nil {
		b.p.fail(cc.Line, field, "%s", strings.TrimPrefix(err.Error(), "connection "+cc.Name+": "))
		return nil
	}
	return ic
}

// revocation makes the connection's revocation checker with the CRLs of
// remote.crls; the daemon gives it the cache it fetches into.
func (b *builder) revocation(cc *ConnConfig, ic *ike.Connection) {
	pol, ok := revocation.ParsePolicy(cc.Remote.Revocation)
	if !ok {
		return // none
	}
	chk := &revocation.Checker{Policy: pol, OCSPURI: cc.Remote.OCSPURI}
	for i, path := range cc.Remote.CRLs {
		r := ref{}
		if i < len(cc.Remote.crlRefs) {
			r = cc.Remote.crlRefs[i]
		}
		data := b.read(path, r, cc, "remote.crls")
		if data == nil {
			continue
		}
		crls, err := revocation.ParseCRLs(data)
		if err != nil {
			line, f := where(r, cc, "remote.crls")
			b.p.fail(line, f, "%s: %v", path, err)
			continue
		}
		chk.CRLs = append(chk.CRLs, crls...)
	}
	ic.Revocation = chk
}

func samePublic(key crypto.Signer, c *x509.Certificate) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(c.PublicKey)
}

func (b *builder) child(ch *ChildConfig, connField string) *ike.ChildConfig {
	field := connField + ".children." + ch.Name
	icc := &ike.ChildConfig{
		Name:       ch.Name,
		ESP:        ch.ESP,
		Mode:       ch.Mode,
		RekeyTime:  ch.RekeyTime,
		LifeTime:   ch.LifeTime,
		RekeyBytes: ch.RekeyBytes,
		LifeBytes:  ch.LifeBytes,
		RandTime:   ch.RandTime,
		Start:      ch.StartAction == "start",
	}
	sels := func(list []string, key string, dynamic *bool) []wire.Selector {
		var out []wire.Selector
		for _, s := range list {
			if s == "dynamic" {
				*dynamic = true
				continue
			}
			sel, err := ts.Parse(s)
			if err != nil {
				b.p.fail(ch.Line, fmt.Sprintf("%s.%s", field, key), "%v", err)
				continue
			}
			out = append(out, sel)
		}
		return out
	}
	icc.LocalTS = sels(ch.LocalTS, "local_ts", &icc.DynamicLocal)
	icc.RemoteTS = sels(ch.RemoteTS, "remote_ts", &icc.DynamicRemote)
	return icc
}

// spreadProbe is the connection's path measurement interval: flow
// spreading weighted by measured paths needs fresh figures from busy
// paths, which no liveness check measures (traffic proves them).
func spreadProbe(cc *ConnConfig) time.Duration {
	if ic := cc.Interfaces; ic != nil && ic.Spread != nil && ic.SpreadMeasured {
		return ic.SpreadProbe
	}
	return 0
}
