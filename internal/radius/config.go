package radius

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Default ports (RFC 2865 §3, RFC 2866 §3) and timers.
const (
	DefaultAuthPort = 1812
	DefaultAcctPort = 1813
	// DefaultTimeout is the first retransmission timeout, RFC 5080
	// §2.2.1's IRT.
	DefaultTimeout = 2 * time.Second
	// DefaultMaxTimeout caps the doubling retransmission timeout (MRT).
	DefaultMaxTimeout = 16 * time.Second
	// DefaultTries is how many times a request goes to one server before
	// the next is tried (MRC).
	DefaultTries = 3
	// DefaultHoldDown is how long a server that did not answer is passed
	// over while another is configured (strongSwan's eap-radius marks a
	// server down the same way and comes back to it later).
	DefaultHoldDown = 60 * time.Second
)

// Server is one RADIUS server.
type Server struct {
	// Address is a host name or IP address.
	Address string
	// AuthPort and AcctPort default to 1812 and 1813.
	AuthPort, AcctPort uint16
	// Secret is the shared secret (RFC 2865 §3); it never prints.
	Secret Secret
}

// authAddr and acctAddr are "host:port" for dialling and for messages.
func (s Server) authAddr() string {
	return net.JoinHostPort(s.Address, strconv.Itoa(int(s.AuthPort)))
}

func (s Server) acctAddr() string {
	return net.JoinHostPort(s.Address, strconv.Itoa(int(s.AcctPort)))
}

// String names the server without its secret.
func (s Server) String() string {
	return fmt.Sprintf("%s (auth %d, acct %d)", s.Address, s.AuthPort, s.AcctPort)
}

// Config configures a Client.
type Config struct {
	// Servers in order of preference: requests go to the first that is
	// not held down.
	Servers []Server
	// Timeout is the first retransmission timeout; each retransmission
	// doubles it up to MaxTimeout, with ±10% jitter (RFC 5080 §2.2.1).
	Timeout, MaxTimeout time.Duration
	// Tries is how many times a request is sent to one server.
	Tries int
	// HoldDown is how long a server that used up its tries is skipped.
	HoldDown time.Duration
	// NAS names the gateway in every request (RFC 2865 §4.1).
	NAS NAS
	// Source, if set, is the local address requests leave from.
	Source netip.Addr
	// Logger, if set, gets dropped replies and failovers at debug and
	// info level. Secrets are never logged.
	Logger *slog.Logger
}

// withDefaults fills in the defaults and checks the configuration.
func (c Config) withDefaults() (Config, error) {
	if len(c.Servers) == 0 {
		return c, errors.New("radius: no server configured")
	}
	c.Servers = append([]Server(nil), c.Servers...)
	for i := range c.Servers {
		s := &c.Servers[i]
		if s.Address == "" {
			return c, fmt.Errorf("radius: server %d has no address", i+1)
		}
		if s.Secret.IsZero() {
			return c, fmt.Errorf("radius: server %s has no shared secret", s.Address)
		}
		if s.AuthPort == 0 {
			s.AuthPort = DefaultAuthPort
		}
		if s.AcctPort == 0 {
			s.AcctPort = DefaultAcctPort
		}
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxTimeout <= 0 {
		c.MaxTimeout = DefaultMaxTimeout
	}
	c.MaxTimeout = max(c.MaxTimeout, c.Timeout)
	if c.Tries <= 0 {
		c.Tries = DefaultTries
	}
	if c.HoldDown <= 0 {
		c.HoldDown = DefaultHoldDown
	}
	if err := c.NAS.validate(); err != nil {
		return c, err
	}
	return c, nil
}
