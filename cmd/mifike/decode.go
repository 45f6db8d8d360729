package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mifike/mifike/internal/conn"
	"github.com/mifike/mifike/internal/wire"
	"github.com/spf13/cobra"
)

// decodeCmd prints what the wire package makes of IKE messages: a quick
// way to check a capture or a peer's bytes against our decoder.
func decodeCmd(stdout, stderr io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "decode [--json] HEX|FILE...",
		Short: "decode IKEv2 messages (hex, or raw files) and print their payloads",
		Long: `Decode IKEv2 messages and print their payloads: each argument is the message in hex
(spaces, colons and newlines allowed), or a FILE that holds raw octets or hex. A port-4500
datagram's non-ESP marker is taken off first (RFC 3948 §2.2).`,
		Example: "  mifike decode 1122334455667788000000000000000000202208000000000000001c\n  mifike decode --json capture.bin",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return argsError(cmd)
			}
			return exit(decode(args, asJSON, stdout, stderr))
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per message")
	return cmd
}

func decode(args []string, asJSON bool, stdout, stderr io.Writer) int {
	status := 0
	for _, arg := range args {
		b, err := loadMessage(arg)
		if err != nil {
			fmt.Fprintf(stderr, "mifike decode: %s: %v\n", arg, err)
			status = 1
			continue
		}
		// A port-4500 datagram starts with the non-ESP marker (RFC 3948
		// §2.2), which the transport's Demux takes off; a bare message
		// starts with the initiator's SPI, never zero (Demux calls it ESP).
		if kind, msg := conn.Demux(b); kind == conn.IKE {
			b = msg
		}
		m, err := wire.ParseMessage(b)
		var crit *wire.UnsupportedCriticalError
		if err != nil && !errors.As(err, &crit) {
			fmt.Fprintf(stderr, "mifike decode: %s: %v\n", arg, err)
			status = 1
			continue
		}
		if asJSON {
			out := map[string]any{
				"spi_i": fmt.Sprintf("%016x", m.SPIi), "spi_r": fmt.Sprintf("%016x", m.SPIr),
				"exchange": m.Exchange.String(), "flags": m.Flags.String(), "message_id": m.MessageID,
				"length": m.Length, "payloads": describe(m.Payloads),
			}
			if crit != nil {
				out["unsupported_critical"] = uint8(crit.Type)
			}
			json.NewEncoder(stdout).Encode(out)
			continue
		}
		fmt.Fprintf(stdout, "%016x_i %016x_r %s\n", m.SPIi, m.SPIr, m)
		for _, d := range describe(m.Payloads) {
			fmt.Fprintf(stdout, "  %s\n", d)
		}
		if crit != nil {
			fmt.Fprintf(stdout, "  (%v)\n", crit)
		}
	}
	return status
}

func loadMessage(arg string) ([]byte, error) {
	if b, err := os.ReadFile(arg); err == nil {
		if h, herr := decodeHex(string(b)); herr == nil {
			return h, nil
		}
		return b, nil
	}
	return decodeHex(arg)
}

func decodeHex(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\n' || r == '\t' || r == ':' || r == '\r' {
			return -1
		}
		return r
	}, s)
	return hex.DecodeString(s)
}

// describe renders each payload's main fields on one line.
func describe(ps []wire.Payload) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		var s string
		switch p := p.(type) {
		case *wire.SA:
			var props []string
			for _, pr := range p.Proposals {
				var ts []string
				for _, t := range pr.Transforms {
					ts = append(ts, transformName(t))
				}
				props = append(props, fmt.Sprintf("#%d %s spi=%x [%s]", pr.Number, pr.Protocol, pr.SPI, strings.Join(ts, " ")))
			}
			s = "SA " + strings.Join(props, "; ")
		case *wire.KE:
			s = fmt.Sprintf("KE %s (%d octets)", p.Group, len(p.Data))
		case *wire.ID:
			s = fmt.Sprintf("%s %s %q", p.Type(), p.IDType, printable(p.Data))
		case *wire.Auth:
			s = fmt.Sprintf("AUTH %s (%d octets)", p.Method, len(p.Data))
		case *wire.Nonce:
			s = fmt.Sprintf("Nonce %x", p.Data)
		case *wire.Notify:
			s = fmt.Sprintf("N(%s) proto=%s spi=%x data=%x", p.NotifyType, p.Protocol, p.SPI, p.Data)
		case *wire.Delete:
			s = fmt.Sprintf("D %s %x", p.Protocol, p.SPIs)
		case *wire.TS:
			var sel []string
			for _, x := range p.Selectors {
				sel = append(sel, fmt.Sprintf("%v-%v proto=%d ports=%d-%d", x.Start, x.End, x.IPProtocol, x.StartPort, x.EndPort))
			}
			s = fmt.Sprintf("%s %s", p.Type(), strings.Join(sel, ", "))
		case *wire.CP:
			var as []string
			for _, a := range p.Attributes {
				as = append(as, fmt.Sprintf("%s=%x", a.Type, a.Value))
			}
			s = fmt.Sprintf("CP %s %s", p.CFGType, strings.Join(as, " "))
		case *wire.Encrypted:
			s = fmt.Sprintf("SK first=%s (%d octets of IV, ciphertext and ICV)", p.First, len(p.Body))
		case *wire.EncryptedFragment:
			s = fmt.Sprintf("SKF %d/%d first=%s (%d octets)", p.Number, p.Total, p.First, len(p.Body))
		default:
			s = p.Type().String()
		}
		out = append(out, s)
	}
	return out
}

func transformName(t wire.Transform) string {
	var n string
	switch t.Type {
	case wire.TransformENCR:
		n = wire.EncrID(t.ID).String()
	case wire.TransformPRF:
		n = wire.PRFID(t.ID).String()
	case wire.TransformINTEG:
		n = wire.IntegID(t.ID).String()
	case wire.TransformDH:
		n = wire.DHGroup(t.ID).String()
	case wire.TransformESN:
		n = wire.ESNID(t.ID).String()
	default:
		n = fmt.Sprintf("%s/%d", t.Type, t.ID)
	}
	if kl, ok := t.KeyLength(); ok {
		n += fmt.Sprintf("_%d", kl)
	}
	return n
}

func printable(b []byte) string {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return hex.EncodeToString(b)
		}
	}
	return string(b)
}
