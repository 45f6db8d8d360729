package wire

import (
	"encoding/binary"
	"fmt"
)

// KE is the Key Exchange payload (RFC 7296 §3.4).
type KE struct {
	Group DHGroup
	Data  []byte
}

func (k *KE) Type() PayloadType { return PayloadKE }
func (k *KE) appendBody(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint16(b, uint16(k.Group))
	return append(append(b, 0, 0), k.Data...), nil
}

func parseKE(body []byte) (*KE, error) {
	if len(body) < 4 {
		return nil, bad(0, "KE body of %d octets lacks group and reserved fields", len(body))
	}
	if len(body) == 4 {
		return nil, bad(4, "KE payload without key exchange data")
	}
	return &KE{Group: DHGroup(binary.BigEndian.Uint16(body)), Data: body[4:]}, nil
}

// ID is the Identification payload, IDi or IDr (RFC 7296 §3.5).
type ID struct {
	Responder bool // IDr when true
	IDType    IDType
	Data      []byte
}

func (i *ID) Type() PayloadType {
	if i.Responder {
		return PayloadIDr
	}
	return PayloadIDi
}

func (i *ID) appendBody(b []byte) ([]byte, error) {
	return append(append(b, byte(i.IDType), 0, 0, 0), i.Data...), nil
}

// Body returns RestOfIDPayload, the octets AUTH covers (§2.15).
func (i *ID) Body() []byte {
	b, _ := i.appendBody(make([]byte, 0, 4+len(i.Data)))
	return b
}

func parseID(responder bool, body []byte) (*ID, error) {
	if len(body) < 4 {
		return nil, bad(0, "ID body of %d octets lacks type and reserved fields", len(body))
	}
	if len(body) == 4 {
		return nil, bad(4, "ID payload without identification data")
	}
	return &ID{Responder: responder, IDType: IDType(body[0]), Data: body[4:]}, nil
}

// Cert is the Certificate payload (RFC 7296 §3.6).
type Cert struct {
	Encoding CertEncoding
	Data     []byte
}

func (c *Cert) Type() PayloadType { return PayloadCERT }
func (c *Cert) appendBody(b []byte) ([]byte, error) {
	return append(append(b, byte(c.Encoding)), c.Data...), nil
}

func parseCert(body []byte) (*Cert, error) {
	if len(body) < 2 {
		return nil, bad(0, "CERT body of %d octets has no certificate data", len(body))
	}
	return &Cert{Encoding: CertEncoding(body[0]), Data: body[1:]}, nil
}

// CertReq is the Certificate Request payload (RFC 7296 §3.7). For X.509 the
// data is a list of 20-octet SHA-1 hashes of trusted CAs' public keys; it may
// be empty.
type CertReq struct {
	Encoding CertEncoding
	Data     []byte
}

func (c *CertReq) Type() PayloadType { return PayloadCERTREQ }
func (c *CertReq) appendBody(b []byte) ([]byte, error) {
	return append(append(b, byte(c.Encoding)), c.Data...), nil
}

// Authorities splits X.509 CERTREQ data into its 20-octet hashes.
func (c *CertReq) Authorities() ([][]byte, error) {
	if len(c.Data)%20 != 0 {
		return nil, fmt.Errorf("ikev2: CERTREQ data of %d octets is not a list of 20-octet hashes", len(c.Data))
	}
	var out [][]byte
	for i := 0; i < len(c.Data); i += 20 {
		out = append(out, c.Data[i:i+20])
	}
	return out, nil
}

func parseCertReq(body []byte) (*CertReq, error) {
	if len(body) < 1 {
		return nil, bad(0, "CERTREQ payload without encoding")
	}
	return &CertReq{Encoding: CertEncoding(body[0]), Data: body[1:]}, nil
}

// Auth is the Authentication payload (RFC 7296 §3.8).
type Auth struct {
	Method AuthMethod
	Data   []byte
}

func (a *Auth) Type() PayloadType { return PayloadAUTH }
func (a *Auth) appendBody(b []byte) ([]byte, error) {
	return append(append(b, byte(a.Method), 0, 0, 0), a.Data...), nil
}

func parseAuth(body []byte) (*Auth, error) {
	if len(body) < 5 {
		return nil, bad(0, "AUTH body of %d octets has no authentication data", len(body))
	}
	return &Auth{Method: AuthMethod(body[0]), Data: body[4:]}, nil
}

// Nonce lengths allowed by RFC 7296 §3.9.
const (
	MinNonceLen = 16
	MaxNonceLen = 256
)

// Nonce is the Nonce payload (RFC 7296 §3.9).
type Nonce struct {
	Data []byte
}

func (n *Nonce) Type() PayloadType { return PayloadNonce }
func (n *Nonce) appendBody(b []byte) ([]byte, error) {
	if len(n.Data) < MinNonceLen || len(n.Data) > MaxNonceLen {
		return nil, fmt.Errorf("nonce of %d octets outside %d..%d", len(n.Data), MinNonceLen, MaxNonceLen)
	}
	return append(b, n.Data...), nil
}

func parseNonce(body []byte) (*Nonce, error) {
	if len(body) < MinNonceLen || len(body) > MaxNonceLen {
		return nil, bad(0, "nonce of %d octets outside %d..%d (RFC 7296 §3.9)", len(body), MinNonceLen, MaxNonceLen)
	}
	return &Nonce{Data: body}, nil
}

// VendorID is the Vendor ID payload (RFC 7296 §3.12); unknown ones are ignored.
type VendorID struct {
	Data []byte
}

func (v *VendorID) Type() PayloadType                   { return PayloadVendor }
func (v *VendorID) appendBody(b []byte) ([]byte, error) { return append(b, v.Data...), nil }

// PuzzleSolution is the Puzzle Solution payload (RFC 8019 §8.2): four
// keys of equal size, each making PRF(key, cookie) end in enough zero bits.
type PuzzleSolution struct {
	Data []byte // the four keys, concatenated
}

// PuzzleKeys is the number of keys a solution holds (RFC 8019 §7.1.3).
const PuzzleKeys = 4

func (p *PuzzleSolution) Type() PayloadType { return PayloadPS }
func (p *PuzzleSolution) appendBody(b []byte) ([]byte, error) {
	if len(p.Data) == 0 || len(p.Data)%PuzzleKeys != 0 {
		return nil, fmt.Errorf("puzzle solution of %d octets is not %d keys of equal size", len(p.Data), PuzzleKeys)
	}
	return append(b, p.Data...), nil
}

// Keys splits the solution into its four keys.
func (p *PuzzleSolution) Keys() [PuzzleKeys][]byte {
	var ks [PuzzleKeys][]byte
	n := len(p.Data) / PuzzleKeys
	for i := range ks {
		ks[i] = p.Data[i*n : (i+1)*n : (i+1)*n]
	}
	return ks
}

func parsePuzzleSolution(body []byte) (*PuzzleSolution, error) {
	// "This field MUST NOT be empty ... the size of this field is always
	// a multiple of 4 bytes" (RFC 8019 §8.2).
	if len(body) == 0 || len(body)%PuzzleKeys != 0 {
		return nil, bad(0, "puzzle solution of %d octets is not %d keys of equal size (RFC 8019 §8.2)", len(body), PuzzleKeys)
	}
	return &PuzzleSolution{Data: body}, nil
}

// Delete is the Delete payload (RFC 7296 §3.11). For IKE it carries no SPI
// (the SA is the one in the header); for ESP and AH, 4-octet inbound SPIs.
type Delete struct {
	Protocol ProtocolID
	SPIs     []uint32
}

func (d *Delete) Type() PayloadType { return PayloadDelete }

func (d *Delete) appendBody(b []byte) ([]byte, error) {
	switch d.Protocol {
	case ProtoIKE:
		if len(d.SPIs) != 0 {
			return nil, fmt.Errorf("delete of the IKE SA carries no SPIs")
		}
		return append(b, byte(ProtoIKE), 0, 0, 0), nil
	case ProtoESP, ProtoAH:
		if len(d.SPIs) == 0 || len(d.SPIs) > 0xffff {
			return nil, fmt.Errorf("delete of %s SAs with %d SPIs", d.Protocol, len(d.SPIs))
		}
		b = append(b, byte(d.Protocol), 4)
		b = binary.BigEndian.AppendUint16(b, uint16(len(d.SPIs)))
		for _, s := range d.SPIs {
			b = binary.BigEndian.AppendUint32(b, s)
		}
		return b, nil
	}
	return nil, fmt.Errorf("delete for protocol %s", d.Protocol)
}

func parseDelete(body []byte) (*Delete, error) {
	if len(body) < 4 {
		return nil, bad(0, "Delete body of %d octets is shorter than 4", len(body))
	}
	d := &Delete{Protocol: ProtocolID(body[0])}
	size, n := int(body[1]), int(binary.BigEndian.Uint16(body[2:]))
	switch d.Protocol {
	case ProtoIKE:
		if size != 0 || n != 0 || len(body) != 4 {
			return nil, bad(1, "IKE SA delete must have SPI size 0 and no SPIs (has size %d, %d SPIs)", size, n)
		}
		return d, nil
	case ProtoESP, ProtoAH:
		if size != 4 {
			return nil, bad(1, "%s delete with SPI size %d, must be 4", d.Protocol, size)
		}
		if n == 0 || len(body)-4 != 4*n {
			return nil, bad(2, "%s delete claims %d SPIs but carries %d octets of SPIs", d.Protocol, n, len(body)-4)
		}
		d.SPIs = make([]uint32, n)
		for i := range d.SPIs {
			d.SPIs[i] = binary.BigEndian.Uint32(body[4+4*i:])
		}
		return d, nil
	}
	return nil, bad(0, "delete for unknown protocol %d", body[0])
}
