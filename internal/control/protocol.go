// Package control is the daemon's control interface: a unix stream socket
// speaking newline-delimited JSON, the server side that hands requests to
// the daemon (Backend), the client the CLI uses, and the JSON views of
// IKE SAs, connections and events.
//
// # Protocol
//
// Each request is one JSON object on one line, at most 64 KiB:
//
//	{"cmd":"terminate","ike_sa":3,"child_spi":3248665540}
//
// and each answer one line:
//
//	{"ok":true,"data":...}
//	{"ok":false,"error":"no IKE SA 3","code":"not-found"}
//
// Requests on one connection are answered in order. "events" answers
// {"ok":true} and then sends one Event object per line until the client
// closes; a client that reads too slowly loses events and then receives
// {"dropped":N}.
//
// "log" (level) is the same for the daemon's log lines: {"ok":true},
// then each record at level and above as the JSON object slog writes
// (time, level, msg, attributes), and {"dropped":N} where a slow client
// lost lines.
//
// Commands and their arguments: list-sas, list-conns, initiate (conn,
// child, ike_sa), terminate (ike_sa, child_spi), terminate-conn (conn),
// rekey (ike_sa, child_spi), clone (ike_sa), move (ike_sa, local,
// remote, iface), reload, events, log (level), and with a StatusBackend
// list-pools, list-certs and stats.
//
// # Waiting for an outcome
//
// The actions (initiate, terminate, rekey, clone, move) answer once the
// daemon has started them, before the peer has said anything: their
// outcome arrives as events. A client that wants it subscribes on a
// second connection first and waits for that {"ok":true}, which comes
// once the daemon has subscribed it, so no event of the request can be
// missed; then it sends the request and follows the events of the IKE SA
// the answer names (Initiated, Terminated, Moved; the others act on the
// IKE SA they were given). `mifike initiate` and the other verbs do
// this (cmd/mifike/wait.go).
package control

import (
	"encoding/json"

	"github.com/mifike/mifike/internal/logstream"
)

// Error codes of a failed request.
const (
	CodeNotFound    = "not-found"   // no such connection, IKE SA or Child SA
	CodeInvalid     = "invalid"     // malformed request or bad arguments
	CodeFailed      = "failed"      // the daemon tried and failed
	CodeUnavailable = "unavailable" // the daemon cannot serve this now (e.g. shutting down)
)

// maxRequest caps a request line so a client cannot make the daemon
// buffer without bound.
const maxRequest = 64 << 10

// Error is a refused or failed request. A Backend returns it to choose the
// code the client sees; Client.Call returns it for every {"ok":false}.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Backend is what the daemon implements. The server calls it from one
// goroutine per connection, concurrently; the daemon makes that safe
// (typically by funnelling calls into its event loop). Errors that are
// not *Error are reported with code "failed" and their text as-is.
type Backend interface {
	ListSAs() ([]SA, error)
	ListConns() ([]Conn, error)
	// Initiate starts an IKE SA of conn; child "" means the connection's
	// start children. A non-zero ikeSA creates the child on that IKE SA
	// (of conn) instead, e.g. on a clone (RFC 7791 Appendix A).
	Initiate(conn, child string, ikeSA uint64) (Initiated, error)
	// Terminate deletes a Child SA (by inbound SPI), or the whole IKE SA
	// when childSPI is 0.
	Terminate(ikeSA uint64, childSPI uint32) error
	// TerminateConn deletes every IKE SA of conn and says which.
	TerminateConn(conn string) (ikeSAs []uint64, err error)
	// Rekey rekeys a Child SA, or the IKE SA when childSPI is 0.
	Rekey(ikeSA uint64, childSPI uint32) error
	// Clone clones the IKE SA (RFC 7791); the clone is announced by an
	// ike-cloned event.
	Clone(ikeSA uint64) error
	// Move moves the IKE SA and its Child SAs to local (and remote, when
	// not empty), pinned to iface when not empty (RFC 4555). unchanged
	// says the SA was on that path already: nothing is sent, and no
	// event follows.
	Move(ikeSA uint64, local, remote, iface string) (unchanged bool, err error)
	// Reload rereads the configuration and says what it changed. The
	// error text is shown to the user unchanged, so it should name file,
	// line and field.
	Reload() (Reloaded, error)
	// Subscribe returns a stream of events until cancel is called. The
	// server drains the channel at once into a per-client queue, so a
	// slow client never holds up the sender, and keeps draining until
	// cancel has returned; after that the backend must not send. It may
	// close the channel to end the stream (e.g. at shutdown).
	Subscribe() (events <-chan Event, cancel func())
}

// request is the union of every command's arguments; unknown fields are
// refused so that a misspelt argument is not silently ignored.
type request struct {
	Cmd      string `json:"cmd"`
	Conn     string `json:"conn,omitempty"`
	Child    string `json:"child,omitempty"`
	IKESA    uint64 `json:"ike_sa,omitempty"`
	ChildSPI uint32 `json:"child_spi,omitempty"`
	Local    string `json:"local,omitempty"`
	Remote   string `json:"remote,omitempty"`
	Iface    string `json:"iface,omitempty"`
	Node     uint8  `json:"node,omitempty"`
	Level    string `json:"level,omitempty"`
}

// LogLevelBackend is what a daemon whose log level can change while it
// runs adds (`mifike loglevel`).
type LogLevelBackend interface {
	// SetLogLevel sets the level (debug, info, warn, error) until the
	// next reload or restart and returns the one before.
	SetLogLevel(level string) (previous string, err error)
}

// LogBackend is what a daemon whose log can be followed adds (`mifike
// log`, like `swanctl --log`).
type LogBackend interface {
	// FollowLog subscribes to the log's records at level and above,
	// whatever level the daemon logs at itself. The server closes the
	// subscription when the client goes.
	FollowLog(level string) (*logstream.Subscription, error)
}

// LogLevel answers log-level: the level now and before.
type LogLevel struct {
	Level    string `json:"level"`
	Previous string `json:"previous"`
}

// ClusterBackend is what a daemon that is a gateway cluster node adds
// (docs/cluster.md); a backend without it answers the cluster commands
// with an error.
type ClusterBackend interface {
	ClusterStatus() (ClusterStatus, error)
	// ClusterMove hands IKE SA ikeSA to node (RFC 7791 load sharing:
	// the node takes it over and moves it to its own address).
	ClusterMove(ikeSA uint64, node uint8) error
}

// ClusterStatus is a node's view of its cluster.
type ClusterStatus struct {
	Name   string `json:"name"`
	Node   uint8  `json:"node"`
	Joined bool   `json:"joined"`
	Fenced bool   `json:"fenced"`
	Owned  int    `json:"owned_sas"`
	// Placement is how new clones spread over the nodes.
	Placement string          `json:"placement"`
	Members   []ClusterMember `json:"members"`
	// Revision is the cluster store's revision when this was read.
	Revision int64  `json:"store_revision"`
	Error    string `json:"error,omitempty"`
}

// ClusterMember is a live node.
type ClusterMember struct {
	Node  uint8    `json:"node"`
	Addrs []string `json:"addrs"`
	// SAs is how many IKE SAs the node owns (its records).
	SAs int `json:"sas"`
}

type response struct {
	OK    bool            `json:"ok"`
	Data  json.RawMessage `json:"data,omitempty"`
	Error string          `json:"error,omitempty"`
	Code  string          `json:"code,omitempty"`
}

// Initiated is the answer to initiate: what a client waiting for the
// outcome watches.
type Initiated struct {
	IKESA uint64 `json:"ike_sa"`
	// Children are the configured names of the Child SAs the request
	// creates: the one asked for, or the connection's start children.
	Children []string `json:"children"`
	// Existing: the Child SA is created on an IKE SA that is established
	// already, so no ike-up follows.
	Existing bool `json:"existing,omitempty"`
}

// Terminated is the answer to terminate-conn.
type Terminated struct {
	Terminated int      `json:"terminated"`
	IKESAs     []uint64 `json:"ike_sas"`
}

// Moved is the answer to move.
type Moved struct {
	// Unchanged: the IKE SA was on that path already (Backend.Move).
	Unchanged bool `json:"unchanged,omitempty"`
}

// droppedMarker is sent in the event stream where events were lost.
type droppedMarker struct {
	Dropped uint64 `json:"dropped"`
}
