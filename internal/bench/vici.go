//go:build linux

package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"syscall"
	"time"
)

// A small client of strongSwan's VICI protocol (the socket swanctl
// talks to; src/libcharon/plugins/vici/README.md): the benchmarks drive
// charon through it rather than through swanctl, whose start-up alone
// would be a large part of what they time.

// VICI packet types (the benchmarks subscribe to no events).
const (
	viciCmdRequest  = 0
	viciCmdResponse = 1
	viciCmdUnknown  = 2
)

// VICI message element types.
const (
	viciSectionStart = 1
	viciSectionEnd   = 2
	viciKeyValue     = 3
	viciListStart    = 4
	viciListItem     = 5
	viciListEnd      = 6
)

// viciMsg is a decoded message: values are string, []string or viciMsg.
type viciMsg map[string]any

// str returns key's value as text, "" when it is missing or not text.
func (m viciMsg) str(key string) string {
	s, _ := m[key].(string)
	return s
}

type viciConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialVICI(path string) (*viciConn, error) {
	for try := 0; ; try++ {
		c, err := net.DialTimeout("unix", path, 5*time.Second)
		// charon's listen backlog is short: several clients at once may
		// find it full for a moment.
		if errors.Is(err, syscall.EAGAIN) && try < 50 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("charon's VICI socket %s: %w", path, err)
		}
		return &viciConn{c: c, r: bufio.NewReader(c)}, nil
	}
}

func (v *viciConn) Close() error { return v.c.Close() }

func (v *viciConn) write(typ byte, name string, msg viciMsg) error {
	body := []byte{typ}
	if name != "" {
		body = append(body, byte(len(name)))
		body = append(body, name...)
	}
	body = encodeVICI(body, msg)
	pkt := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	_, err := v.c.Write(append(pkt, body...))
	return err
}

func (v *viciConn) read() (byte, []byte, error) {
	var l [4]byte
	if _, err := io.ReadFull(v.r, l[:]); err != nil {
		return 0, nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(l[:]))
	if _, err := io.ReadFull(v.r, b); err != nil {
		return 0, nil, err
	}
	if len(b) == 0 {
		return 0, nil, errors.New("vici: empty packet")
	}
	return b[0], b[1:], nil
}

// call sends a command and returns its response, skipping anything else.
func (v *viciConn) call(cmd string, msg viciMsg) (viciMsg, error) {
	if err := v.write(viciCmdRequest, cmd, msg); err != nil {
		return nil, fmt.Errorf("vici %s: %w", cmd, err)
	}
	for {
		typ, b, err := v.read()
		if err != nil {
			return nil, fmt.Errorf("vici %s: %w", cmd, err)
		}
		switch typ {
		case viciCmdResponse:
			return decodeVICI(b)
		case viciCmdUnknown:
			return nil, fmt.Errorf("vici: charon does not know the command %q", cmd)
		}
	}
}

// ok runs a command that answers success=yes or an errmsg.
func (v *viciConn) ok(cmd string, msg viciMsg) (viciMsg, error) {
	r, err := v.call(cmd, msg)
	if err != nil {
		return nil, err
	}
	if r.str("success") != "yes" {
		return r, fmt.Errorf("vici %s: %s", cmd, r.str("errmsg"))
	}
	return r, nil
}

func encodeVICI(b []byte, m viciMsg) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch v := m[k].(type) {
		case viciMsg:
			b = append(append(append(b, viciSectionStart, byte(len(k))), k...), encodeVICI(nil, v)...)
			b = append(b, viciSectionEnd)
		case []string:
			b = append(append(b, viciListStart, byte(len(k))), k...)
			for _, s := range v {
				b = append(binary.BigEndian.AppendUint16(append(b, viciListItem), uint16(len(s))), s...)
			}
			b = append(b, viciListEnd)
		default:
			s := fmt.Sprint(v)
			b = append(append(b, viciKeyValue, byte(len(k))), k...)
			b = append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
		}
	}
	return b
}

func decodeVICI(b []byte) (viciMsg, error) {
	root := viciMsg{}
	stack := []viciMsg{root}
	var list *[]string
	bad := errors.New("vici: malformed message")
	name := func() (string, bool) {
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return "", false
		}
		n := string(b[1 : 1+int(b[0])])
		b = b[1+int(b[0]):]
		return n, true
	}
	value := func() (string, bool) {
		if len(b) < 2 || len(b) < 2+int(binary.BigEndian.Uint16(b)) {
			return "", false
		}
		l := int(binary.BigEndian.Uint16(b))
		v := string(b[2 : 2+l])
		b = b[2+l:]
		return v, true
	}
	for len(b) > 0 {
		t := b[0]
		b = b[1:]
		switch t {
		case viciSectionStart:
			n, ok := name()
			if !ok {
				return nil, bad
			}
			s := viciMsg{}
			stack[len(stack)-1][n] = s
			stack = append(stack, s)
		case viciSectionEnd:
			if len(stack) < 2 {
				return nil, bad
			}
			stack = stack[:len(stack)-1]
		case viciKeyValue:
			n, ok1 := name()
			v, ok2 := value()
			if !ok1 || !ok2 {
				return nil, bad
			}
			stack[len(stack)-1][n] = v
		case viciListStart:
			n, ok := name()
			if !ok {
				return nil, bad
			}
			l := []string{}
			list = &l
			stack[len(stack)-1][n] = list
		case viciListItem:
			v, ok := value()
			if !ok || list == nil {
				return nil, bad
			}
			*list = append(*list, v)
		case viciListEnd:
			list = nil
		default:
			return nil, bad
		}
	}
	// Lists were filled through pointers; store their final values.
	var fix func(m viciMsg)
	fix = func(m viciMsg) {
		for k, v := range m {
			switch x := v.(type) {
			case *[]string:
				m[k] = *x
			case viciMsg:
				fix(x)
			}
		}
	}
	fix(root)
	return root, nil
}
