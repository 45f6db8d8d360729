package wire

import (
	"fmt"
	"strings"
)

// String summarises a message the way strongSwan logs it, e.g.
// "CREATE_CHILD_SA request 3 [ N(CLONE_IKE_SA) SA No KE ]", so logs of both
// daemons can be read side by side.
func (m *Message) String() string {
	dir := "request"
	if m.IsResponse() {
		dir = "response"
	}
	return fmt.Sprintf("%s %s %d %s", m.Exchange, dir, m.MessageID, Summary(m.Payloads))
}

// Summary lists payload types, with notify types spelled out.
func Summary(ps []Payload) string {
	var b strings.Builder
	b.WriteString("[")
	for _, p := range ps {
		b.WriteString(" ")
		switch p := p.(type) {
		case *Notify:
			fmt.Fprintf(&b, "N(%s)", p.NotifyType)
		case *Delete:
			fmt.Fprintf(&b, "D(%s)", p.Protocol)
		case *Encrypted:
			fmt.Fprintf(&b, "SK{%s}", p.First)
		case *EncryptedFragment:
			fmt.Fprintf(&b, "SKF(%d/%d)", p.Number, p.Total)
		case *Unknown:
			fmt.Fprintf(&b, "%s", p.PayloadType)
		default:
			b.WriteString(p.Type().String())
		}
	}
	b.WriteString(" ]")
	return b.String()
}
