package ike

import "github.com/mifike/mifike/internal/ikecrypto"

func (e *Engine) keyLog(sa *ikeSA, k *ikecrypto.IKEKeys) {
	if !e.cfg.ExportKeys {
		return
	}
	e.emit(IKEKeys{IKESA: sa.id, SPIi: sa.spiI, SPIr: sa.spiR, Encr: sa.neg.Encr.Encr, KeyBits: sa.neg.Encr.KeyBits,
		Integ: sa.neg.Integ, SKei: k.SKei, SKer: k.SKer, SKai: k.SKai, SKar: k.SKar})
}
