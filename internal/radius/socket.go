package radius

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// socket is one UDP socket connected to one server port, with its own
// identifier space (RFC 2865 §3: the Identifier matches a reply to its
// request per source port). An identifier stays taken while its request
// is in flight, retransmissions included (RFC 5080 §2.2.1); with all 256
// taken, the next request waits for one to be freed (or its context to
// end) rather than opening another socket: 256 EAP rounds in flight to
// one server is already far more than a gateway's server should get.
type socket struct {
	conn  *net.UDPConn
	addr  string        // host:port, for messages
	slots chan struct{} // one token per identifier in use

	mu      sync.Mutex
	waiting [256]chan []byte // the request holding each identifier, nil if free
	next    byte             // where the search for a free identifier starts
}

func newSocket(conn *net.UDPConn, addr string) *socket {
	s := &socket{conn: conn, addr: addr, slots: make(chan struct{}, 256)}
	// A random start and a rotating search: a freed identifier is not
	// reused at once, so a late reply to the old request is less likely
	// to reach the new one (it would fail its authenticator check
	// anyway).
	s.next = randomAuthenticator()[0]
	return s
}

// acquire takes a free identifier and the channel its replies come on.
func (s *socket) acquire(ctx context.Context, done <-chan struct{}, st *Stats) (byte, chan []byte, error) {
	select {
	case s.slots <- struct{}{}:
	default:
		st.IdentifierWaits.Add(1)
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			return 0, nil, fmt.Errorf("radius: %s: waiting for one of 256 identifiers in flight: %w", s.addr, ctx.Err())
		case <-done:
			return 0, nil, ErrClosed
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for range 256 {
		id := s.next
		s.next++
		if s.waiting[id] == nil {
			// Room for a few replies: a retransmission may draw a
			// duplicate, an attacker may send junk ahead of the answer.
			ch := make(chan []byte, 4)
			s.waiting[id] = ch
			return id, ch, nil
		}
	}
	<-s.slots
	return 0, nil, errors.New("radius: identifier accounting broken") // slots and waiting disagree
}

// release frees an identifier.
func (s *socket) release(id byte) {
	s.mu.Lock()
	s.waiting[id] = nil
	s.mu.Unlock()
	<-s.slots
}

// read hands every datagram to the request holding its identifier until
// the socket is closed. The buffer is MaxPacketLength octets: a longer
// datagram is cut there, which loses only padding if its Length is valid
// (RFC 2865 §3) and is dropped as malformed otherwise.
func (s *socket) read(st *Stats) {
	buf := make([]byte, MaxPacketLength)
	for {
		n, err := s.conn.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil || n < 2 {
			// ICMP errors (connection refused) come up here; a short
			// datagram has no identifier to route by.
			if err == nil {
				st.Malformed.Add(1)
			}
			continue
		}
		s.mu.Lock()
		ch := s.waiting[buf[1]]
		s.mu.Unlock()
		if ch == nil {
			st.Unexpected.Add(1)
			continue
		}
		select {
		case ch <- append([]byte(nil), buf[:n]...):
		default:
			st.Unexpected.Add(1)
		}
	}
}
