package ike

import (
	"net/netip"
	"time"

	"github.com/mifike/mifike/internal/ikecrypto"
	"github.com/mifike/mifike/internal/wire"
)

// A feature is one negotiated extension of IKEv2 (NAT traversal, RFC 7427
// signature hashes, the window size, MOBIKE, clone, INITIAL_CONTACT,
// configuration payloads), kept in one file and written for both roles:
// it adds its payloads to the messages of the exchanges it takes part in
// and reads the peer's. The exchanges (init.go, auth.go, createchild.go,
// info.go) call every registered feature at fixed points, in registration
// order, which is also the order of their payloads in a message; a
// feature implements the hooks of the exchanges it touches and no others.
// This is strongSwan's task-per-feature split (build_i, process_r,
// build_r, process_i) without an object per exchange: what a feature
// keeps for the SA's life lives in extensions, what it needs for one
// exchange in that exchange (initExchange, authExchange).
type feature interface{ String() string }

// registered are the features every engine runs, in payload order.
// Adding a feature is one file and one line here. (Engine.features is
// this list; tests may add a unit to one engine's.)
var registered = []feature{
	natTraversal{},
	signatureHashes{},
	initialContact{},
	configPayload{},
	windowSize{},
	mobikeFeature{},
	cloneFeature{},
	fragmentation{},
	childless{},
	eapAuth{},
	midSync{},
	redirectFeature{},
}

// extensions is what the features negotiated for an IKE SA: set in
// IKE_SA_INIT and IKE_AUTH, inherited whole by the SAs a rekey or a clone
// makes from it (deriveSuccessor), and plain data, so it can be exported.
type extensions struct {
	// NAT traversal (RFC 7296 §2.23): we or the peer are behind a NAT;
	// the peer does NAT traversal at all (it sent NAT_DETECTION_*).
	natLocal, natRemote, peerNATT bool
	// peerHashes are the hashes the peer verifies in signatures (RFC
	// 7427 §4), nil unless both sides sent SIGNATURE_HASH_ALGORITHMS.
	peerHashes []wire.HashAlgorithm
	// mobike: both sent MOBIKE_SUPPORTED (RFC 4555 §3.1).
	mobike bool
	// cloneLocal, clonePeer: we, the peer sent CLONE_IKE_SA_SUPPORTED
	// (RFC 7791 §5.1).
	cloneLocal, clonePeer bool
	// fragmentation: both sent IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383
	// §2.3).
	fragmentation bool
	// childless: the responder sent CHILDLESS_IKEV2_SUPPORTED (RFC 6023
	// §3); read by the initiator only.
	childless bool
	// midSync: both sent IKEV2_MESSAGE_ID_SYNC_SUPPORTED (RFC 6311 §5).
	midSync bool
	// RFC 5685: we announced REDIRECT_SUPPORTED (as initiator, so we may
	// be redirected), the peer did (so we may redirect it, §3); and as
	// initiator the gateway that redirected us, for REDIRECTED_FROM.
	redirectLocal, redirectPeer bool
	redirectFrom                netip.Addr
}

// initExchange is one IKE_SA_INIT as the features see it: the SPIs as
// they stand in the header of the message being built or read, its
// addresses, and the extensions of the SA (or half-open SA) it makes.
type initExchange struct {
	e             *Engine
	conn          *Connection
	spiI, spiR    uint64
	local, remote netip.AddrPort
	ext           *extensions
}

// initFeature takes part in IKE_SA_INIT (RFC 7296 §1.2).
type initFeature interface {
	feature
	// initRequest adds to the initiator's request (built again after a
	// COOKIE or INVALID_KE_PAYLOAD answer).
	initRequest(x *initExchange) []wire.Payload
	// readInit reads the peer's message into x.ext: the request as
	// responder, the response as initiator.
	readInit(x *initExchange, m *message)
	// initResponse adds to the responder's response, after readInit.
	initResponse(x *initExchange, m *message) []wire.Payload
}

// authExchange is one IKE_AUTH exchange, which may take several rounds
// (RFC 7296 §2.16): the initiator keeps it in its task, the responder in
// the SA's handshake state between rounds; it goes when IKE_AUTH ends.
// The first request carries what the features negotiate (the responder
// reads them there), the last response what the responder answers (the
// initiator reads them there).
type authExchange struct {
	round int // 1 for the first request and its response
	// first is the responder's copy of the first request.
	first *message
	// more: a unit asked for another round in this one.
	more bool
	// cpAsked: the initiator asked for virtual IPs (configPayload).
	cpAsked bool
	// childRefused, when set by a feature at the responder, refuses the
	// first Child SA with this notify (a virtual IP could not be
	// assigned, so its traffic selectors cannot be narrowed to it).
	childRefused wire.NotifyType
	// refusal, when a feature at the responder set it (refuse), answers
	// the request with this error notify and ends the SA.
	refusal    wire.NotifyType
	refusalWhy string
	// wait, when a unit at the responder set it, holds the request
	// (held, with the payloads its response has so far) until the unit
	// has an answer from outside the engine (EAP, eap.go).
	wait   bool
	held   *message
	heldPS []wire.Payload
	// eap is the EAP conversation (eap.go), both roles.
	eap *eapExchange
}

// needMore asks for another IKE_AUTH round (strongSwan's NEED_MORE).
func (x *authExchange) needMore() { x.more = true }

// refuse makes the responder answer with the error notify t alone and
// drop the SA; the features after this one are not asked.
func (x *authExchange) refuse(t wire.NotifyType, why string) {
	x.refusal, x.refusalWhy = t, why
}

// authFeature takes part in IKE_AUTH.
type authFeature interface {
	feature
	// authRequest adds to the initiator's first IKE_AUTH request.
	authRequest(sa *ikeSA, x *authExchange) []wire.Payload
	// respondAuth reads the first request (x.first) once the peer is
	// authenticated and adds to the responder's last response.
	respondAuth(sa *ikeSA, x *authExchange) []wire.Payload
	// readAuthResponse reads the responder's last response, which the
	// initiator has authenticated, before the SA is established.
	readAuthResponse(sa *ikeSA, x *authExchange, m *message)
}

// authRounds is a unit that runs IKE_AUTH rounds of its own before the
// exchange ends (EAP, RFC 7296 §2.16; a second authentication, RFC 4739):
// while any unit calls needMore in a round, another round follows, and
// the features answer only in the last.
type authRounds interface {
	feature
	// roundRequest adds to the initiator's request of round x.round.
	roundRequest(sa *ikeSA, x *authExchange) ([]wire.Payload, error)
	// roundRespond reads the request of round x.round at the responder
	// and returns what its response carries.
	roundRespond(sa *ikeSA, x *authExchange, m *message) ([]wire.Payload, error)
	// roundResponse reads the response of round x.round at the initiator.
	roundResponse(sa *ikeSA, x *authExchange, m *message) error
}

// infoFeature takes part in INFORMATIONAL requests the peer sends (RFC
// 7296 §1.4) besides Deletes.
type infoFeature interface {
	feature
	// respondInfo returns what the response carries; refused answers
	// the request with just that, and nothing else of it is processed.
	respondInfo(sa *ikeSA, m *message) (ps []wire.Payload, refused bool)
	// afterInfo acts on the request once its response went out.
	afterInfo(sa *ikeSA, m *message)
}

// childFeature claims CREATE_CHILD_SA requests of its own kind (a clone
// request is an IKE SA rekey with CLONE_IKE_SA, RFC 7791 §5.2).
type childFeature interface {
	feature
	// respondCreateChild answers m and reports true if it is of the
	// feature's kind; offered and nonce are the request's SA and Nonce.
	respondCreateChild(sa *ikeSA, m *message, offered *wire.SA, nonce *wire.Nonce) bool
}

// handshake is what IKE_SA_INIT and IKE_AUTH need and nothing after
// them: the nonces and messages AUTH signs (§2.15), SK_pi and SK_pr, our
// DH key until the peer's arrives, and the responder's IKE_AUTH exchange
// between rounds. The SA drops it when it is established, so no SA keeps
// handshake material for its life (crypto/tls does the same).
type handshake struct {
	ni, nr            []byte
	initReq, initResp []byte
	skp               [2][]byte
	dh                *ikecrypto.DH
	auth              *authExchange
	// redirects are when IKE_SA_INIT redirects of this setup were
	// followed (RFC 5685 §7), the older ones forgotten; carried into
	// the handshake that each redirect starts.
	redirects []time.Time
}

// forEach calls f for each of the engine's features of type T, in order.
func forEach[T feature](e *Engine, f func(T)) {
	for _, x := range e.features {
		if t, ok := x.(T); ok {
			f(t)
		}
	}
}
