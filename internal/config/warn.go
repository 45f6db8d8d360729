package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"slices"
)

// hostChecks is what Parse found that only this machine can judge: who
// may read the secrets, and whether the control group exists. Load
// checks it; Parse touches no more files than it must, so a
// configuration can still be parsed anywhere.
type hostChecks struct {
	// inline are the secrets written in the configuration file itself
	// (psk, local.password, a RADIUS secret).
	inline []ref
	// files hold secrets: private keys, password files, the cluster's
	// key-encryption key.
	files []secretFile
	group ref // control.group, when set
}

type secretFile struct {
	path string
	ref
}

func (h *hostChecks) file(path string, r ref) {
	h.files = append(h.files, secretFile{path: path, ref: r})
}

// hostWarnings checks the files holding secrets and the control group.
// A file that cannot be read is not warned about: Build or the daemon
// fails on it with its own error.
func (c *Config) hostWarnings() []Warning {
	var ws []Warning
	warn := func(r ref, format string, args ...any) {
		ws = append(ws, Warning{File: c.File, Line: r.line, Field: r.field, Msg: fmt.Sprintf(format, args...)})
	}
	if len(c.host.inline) > 0 {
		if mode, who := exposed(c.File); who != "" {
			// Once, at the first secret in the file (the radius section
			// is read before the connections, wherever it is written):
			// one chmod fixes them all.
			first := slices.MinFunc(c.host.inline, func(a, b ref) int { return a.line - b.line })
			warn(first, "this file holds a secret and is %s (mode %04o); chmod 600 %s", who, mode, c.File)
		}
	}
	for _, f := range c.host.files {
		if mode, who := exposed(f.path); who != "" {
			warn(f.ref, "%s holds a secret and is %s (mode %04o); chmod 600 %s", f.path, who, mode, f.path)
		}
	}
	if g := c.Control.Group; g != "" {
		if _, err := user.LookupGroup(g); err != nil {
			var unknown user.UnknownGroupError
			if errors.As(err, &unknown) {
				warn(c.host.group, "no group %q on this machine: the daemon will not start until it exists (groupadd %s) or control.group names another", g, g)
			} else {
				warn(c.host.group, "cannot look up group %q: %v; the daemon needs it to start", g, err)
			}
		}
	}
	return ws
}

// exposed says who besides the owner and group may read or replace the
// file at path. Only other users count: a group such as ssl-cert reading
// a key is a deliberate choice, but a secret any local user can read is
// no longer secret, and a key any of them can replace is theirs.
func exposed(path string) (fs.FileMode, string) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, ""
	}
	m := fi.Mode().Perm()
	switch {
	case m&0o006 == 0o006:
		return m, "readable and writable by every local user"
	case m&0o004 != 0:
		return m, "readable by every local user"
	case m&0o002 != 0:
		return m, "writable by every local user"
	}
	return m, ""
}

// sortWarnings orders by line, keeping one line's reading order, and
// drops repeats (a YAML anchor merged in twice).
func sortWarnings(ws []Warning) []Warning {
	slices.SortStableFunc(ws, func(a, b Warning) int { return a.Line - b.Line })
	return slices.Compact(ws)
}
