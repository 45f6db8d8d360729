package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// callTimeout bounds a request so the CLI does not hang on a wedged daemon.
const callTimeout = 30 * time.Second

// Client is one connection to the daemon. It is not safe for concurrent
// use: requests on a connection are answered in order.
type Client struct {
	path string
	conn net.Conn
	r    *bufio.Reader
}

// Dial connects to the daemon's socket. Its errors say how to fix the
// usual causes: no daemon, or no permission on the socket.
func Dial(path string) (*Client, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, dialError(path, err)
	}
	return &Client{path: path, conn: c, r: bufio.NewReader(c)}, nil
}

func dialError(path string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach mifike at %s: is the daemon running? (mifike daemon -c FILE)", path)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("cannot reach mifike at %s: permission denied: run as root or as a member of the control group", path)
	}
	return fmt.Errorf("cannot reach mifike at %s: %w", path, err)
}

// Call sends cmd with args and decodes the answer's data into out (which
// may be nil). A refusal or failure by the daemon is an *Error; any other
// error means the connection failed.
func (c *Client) Call(cmd string, args map[string]any, out any) error {
	req := make(map[string]any, len(args)+1)
	for k, v := range args {
		req[k] = v
	}
	req["cmd"] = cmd
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	c.conn.SetDeadline(time.Now().Add(callTimeout))
	defer c.conn.SetDeadline(time.Time{})
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return c.lost(err)
	}
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		return c.lost(err)
	}
	var resp response
	if err := json.Unmarshal(line, &resp); err != nil {
		return fmt.Errorf("mifike at %s answered something else than the control protocol: %w", c.path, err)
	}
	if !resp.OK {
		return &Error{Code: resp.Code, Msg: resp.Error}
	}
	if out != nil && resp.Data != nil {
		if err := json.Unmarshal(resp.Data, out); err != nil {
			return fmt.Errorf("decoding the answer to %s: %w", cmd, err)
		}
	}
	return nil
}

func (c *Client) lost(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("mifike at %s did not answer within %v", c.path, callTimeout)
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("mifike at %s closed the connection", c.path)
	}
	return fmt.Errorf("connection to mifike at %s: %w", c.path, err)
}

// Events subscribes and calls fn for each event, in order, until fn
// returns false (Events then returns nil) or the stream ends. A marker of
// lost events arrives as an Event with only Dropped set.
func (c *Client) Events(fn func(Event) bool) error {
	if err := c.Subscribe(); err != nil {
		return err
	}
	for {
		ev, err := c.Next(time.Time{})
		if err != nil {
			return err
		}
		if !fn(ev) {
			return nil
		}
	}
}

// Subscribe turns the connection into an event stream (read it with
// Next). It returns once the daemon has subscribed: every event from
// then on reaches this client, or the marker of its loss does, so a
// request sent afterwards on another connection cannot outrun its own
// events.
func (c *Client) Subscribe() error {
	return c.Call("events", nil, nil)
}

// Next returns the next event of a subscription, waiting until deadline
// (zero: for as long as it takes); a missed deadline is an error that
// wraps os.ErrDeadlineExceeded, after which the stream is not to be read
// again. A marker of lost events is an Event with only Dropped set.
func (c *Client) Next(deadline time.Time) (Event, error) {
	c.conn.SetReadDeadline(deadline)
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		switch {
		case errors.Is(err, io.EOF):
			return Event{}, fmt.Errorf("mifike at %s ended the event stream (daemon stopped?)", c.path)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return Event{}, err
		}
		return Event{}, c.lost(err)
	}
	var ev Event
	if err := json.Unmarshal(line, &ev); err != nil {
		return Event{}, fmt.Errorf("mifike at %s sent a malformed event: %w", c.path, err)
	}
	return ev, nil
}

// Close ends the connection; it also ends an Events call in progress.
func (c *Client) Close() error { return c.conn.Close() }

// FollowLog turns the connection into a stream of the daemon's log
// records at level and above and calls fn for each, in order, until fn
// returns false (FollowLog then returns nil) or the stream ends. A record
// is the JSON object slog writes, with dropped 0; a gap, where this
// client read too slowly, is a nil record and the number of lines lost.
func (c *Client) FollowLog(level string, fn func(record json.RawMessage, dropped uint64) bool) error {
	if err := c.Call("log", map[string]any{"level": level}, nil); err != nil {
		return err
	}
	c.conn.SetReadDeadline(time.Time{})
	for {
		line, err := c.r.ReadBytes('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("mifike at %s ended the log stream (daemon stopped?)", c.path)
			}
			return c.lost(err)
		}
		var marker struct {
			Dropped uint64  `json:"dropped"`
			Msg     *string `json:"msg"`
		}
		if err := json.Unmarshal(line, &marker); err != nil {
			return fmt.Errorf("mifike at %s sent a malformed log line: %w", c.path, err)
		}
		// Every record has a msg; the marker has none.
		rec := json.RawMessage(bytes.TrimSuffix(line, []byte("\n")))
		if marker.Msg == nil && marker.Dropped > 0 {
			rec = nil
		} else {
			marker.Dropped = 0
		}
		if !fn(rec, marker.Dropped) {
			return nil
		}
	}
}
