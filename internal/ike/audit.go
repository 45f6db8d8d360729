package ike

import (
	"fmt"
	"strings"
)

// Audit checks the engine's internal tables against each other: every
// index entry points at a live SA or Child SA that points back, and no
// reserved SPI outlives its exchange. Tests run it after every scenario;
// the daemon can run it on demand.
func (e *Engine) Audit() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	pendingSPIs := 0
	for spi, sa := range e.sas {
		switch {
		case sa.state == stateDead:
			bad("IKE SA %d (%016x) is dead but still indexed", sa.id, spi)
		case sa.id == 0:
			pendingSPIs++ // reserved by an IKE rekey in flight
		case e.byID[sa.id] != sa:
			bad("IKE SA %016x not in the id index", spi)
		case sa.localSPI() != spi:
			bad("IKE SA %d indexed under %016x but its SPI is %016x", sa.id, spi, sa.localSPI())
		}
	}
	rekeys := 0
	for id, sa := range e.byID {
		if e.sas[sa.localSPI()] != sa {
			bad("IKE SA %d not in the SPI index", id)
		}
		for _, p := range sa.outstanding {
			if _, ok := p.task.(*ikeRekeyTask); ok {
				rekeys++
			}
		}
		for _, c := range sa.children {
			if c.ike != sa {
				bad("Child SA %08x listed on IKE SA %d but points at %d", c.inSPI, id, c.ike.id)
			}
			if e.children[c.inSPI] != c {
				bad("Child SA %08x of IKE SA %d not in the SPI index", c.inSPI, id)
			}
			if c.state == childGone {
				bad("Child SA %08x of IKE SA %d is deleted but still listed", c.inSPI, id)
			}
		}
	}
	if pendingSPIs > rekeys {
		bad("%d IKE SPIs reserved but only %d IKE rekeys in flight", pendingSPIs, rekeys)
	}
	reserved := 0
	for spi, c := range e.children {
		if c == nil {
			reserved++
			continue
		}
		if c.state == childGone || c.ike.state == stateDead {
			bad("Child SA %08x is gone but still indexed", spi)
		}
	}
	inFlight := 0
	for _, sa := range e.byID {
		inFlight += len(sa.outstanding)
	}
	if reserved > 2*inFlight {
		bad("%d Child SA SPIs reserved with only %d exchanges in flight", reserved, inFlight)
	}
	e.auditHalfOpen(bad)
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}
