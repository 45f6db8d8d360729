// Package deb holds the Debian packaging (build.sh, "make deb"); its test
// builds the package and installs it into a scratch dpkg root.
package deb

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// debversion.sh turns what "mifike version" says into a Debian version
// that sorts as the releases do (deb-version(7)).
func TestDebVersion(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	for _, c := range []struct{ describe, want string }{
		{"v1.2.0", "1.2.0"},
		{"v1.2.0-5-gabc1234", "1.2.0+5.gabc1234"},
		{"v1.3.0-rc1", "1.3.0~rc1"},
		{"v1.3.0-rc1-2-gdeadbee", "1.3.0~rc1+2.gdeadbee"},
		{"v1.2.0-dirty", "1.2.0+dirty"},
		{"abc1234", "0~123.gabc1234"},
		{"8408379-dirty", "0~123.g8408379+dirty"},
	} {
		out, err := exec.Command("./debversion.sh", c.describe, "123").CombinedOutput()
		if err != nil {
			t.Fatalf("debversion.sh %s: %v\n%s", c.describe, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != c.want {
			t.Errorf("debversion.sh %s = %q, want %q", c.describe, got, c.want)
		}
	}
	// No digit to begin with: no valid Debian version, and no package.
	if out, err := exec.Command("./debversion.sh", "dev", "1").CombinedOutput(); err == nil {
		t.Errorf("debversion.sh dev = %q, want a refusal", out)
	}
	// Ordering: a build after a tag sorts after the tag, a release
	// candidate before the release, an untagged build before any release.
	if _, err := exec.LookPath("dpkg"); err == nil {
		for _, c := range [][2]string{{"1.2.0", "1.2.0+5.gabc1234"}, {"1.3.0~rc1", "1.3.0"}, {"0~123.gabc1234", "0~124.g0000000"}, {"0~999.gabc1234", "0.1"}} {
			if err := exec.Command("dpkg", "--compare-versions", c[0], "lt", c[1]).Run(); err != nil {
				t.Errorf("dpkg says %s is not older than %s", c[0], c[1])
			}
		}
	}
}

// What the package must hold, beyond the examples.
var packaged = []string{
	"usr/bin/mifike",
	"lib/systemd/system/mifike.service",
	"usr/share/man/man8/mifike.8.gz",
	"usr/share/bash-completion/completions/mifike",
	"usr/share/zsh/vendor-completions/_mifike",
	"usr/share/fish/vendor_completions.d/mifike.fish",
	"usr/share/doc/mifike/copyright",
	"usr/share/doc/mifike/changelog.gz",
	"usr/share/lintian/overrides/mifike",
}

// "make deb" builds a package that dpkg installs, whose mifike says the
// package's version, with the unit, manual pages, completions and
// examples where Debian looks for them, and that dpkg purges again. It
// installs into a scratch root (dpkg --root), the maintainer scripts run
// without chroot and, seeing DPKG_ROOT, leave the host's systemd alone.
func TestPackageInstalls(t *testing.T) {
	for _, tool := range []string{"dpkg-deb", "dpkg", "dpkg-query", "git", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian has dpkg; the package is built with dpkg-deb): %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("dpkg installs the package's root-owned files only as root (CI runs as root)")
	}
	top, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	describe := run(t, top, "git", "describe", "--always", "--dirty")
	count := run(t, top, "git", "rev-list", "--count", "HEAD")
	wantVersion := run(t, ".", "./debversion.sh", describe, count)

	out := t.TempDir()
	build := exec.Command("./build.sh")
	build.Env = append(os.Environ(), "OUT="+out, "VERSION="+describe, "DEB_COMPRESSION=none")
	var stdout, stderr bytes.Buffer
	build.Stdout, build.Stderr = &stdout, &stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build.sh: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	deb := lines[len(lines)-1]
	if filepath.Dir(deb) != out || !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("build.sh printed %q last, want the package in %s", deb, out)
	}

	if v := run(t, ".", "dpkg-deb", "-f", deb, "Version"); v != wantVersion {
		t.Fatalf("the package's version is %q, want %q (from %q)", v, wantVersion, describe)
	}
	if base := filepath.Base(deb); !strings.HasPrefix(base, "mifike_"+wantVersion+"_") {
		t.Errorf("the package's file is %s, want mifike_%s_ARCH.deb", base, wantVersion)
	}
	if d := run(t, ".", "dpkg-deb", "-f", deb, "Depends"); d != "" {
		t.Errorf("Depends: %s; the static binary needs nothing (update this test if that changed)", d)
	}

	// The listing: everything in place, owned by root, nothing in /etc
	// (the package has no conffiles; the configuration is the admin's).
	listing := map[string]bool{}
	for _, l := range strings.Split(run(t, ".", "dpkg-deb", "-c", deb), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c line %q", l)
		}
		if f[1] != "root/root" {
			t.Errorf("%s is owned by %s, want root/root", f[5], f[1])
		}
		name := strings.TrimPrefix(f[5], "./")
		if strings.HasPrefix(name, "etc/") {
			t.Errorf("%s: the package ships nothing in /etc", name)
		}
		listing[strings.TrimSuffix(name, "/")] = true
	}
	examples, err := filepath.Glob(filepath.Join(top, "examples", "*"))
	if err != nil || len(examples) == 0 {
		t.Fatalf("no examples/* (%v)", err)
	}
	want := append([]string(nil), packaged...)
	for _, e := range examples {
		want = append(want, "usr/share/doc/mifike/examples/"+filepath.Base(e))
	}
	for _, f := range want {
		if !listing[f] {
			t.Errorf("the package lacks %s", f)
		}
	}
	if c := run(t, ".", "dpkg-deb", "-f", deb, "Conffiles"); c != "" {
		t.Errorf("Conffiles: %s", c)
	}

	// Install into a scratch root, as dpkg would on a host.
	root := t.TempDir()
	admin := filepath.Join(root, "var/lib/dpkg")
	for _, d := range []string{"info", "updates"} {
		if err := os.MkdirAll(filepath.Join(admin, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(admin, "status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg := []string{"--root=" + root, "--log=" + filepath.Join(out, "dpkg.log"), "--force-script-chrootless"}
	run(t, ".", "dpkg", append(dpkg, "-i", deb)...)
	if v := run(t, ".", "dpkg-query", "--root="+root, "-W", "-f=${Status} ${Version}", "mifike"); v != "install ok installed "+wantVersion {
		t.Fatalf("dpkg-query says %q, want installed %s", v, wantVersion)
	}

	// The installed mifike says what the package says.
	var info struct{ Version string }
	if err := json.Unmarshal([]byte(run(t, ".", filepath.Join(root, "usr/bin/mifike"), "version", "--json")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Version != describe {
		t.Fatalf("the installed mifike says version %q, want %q", info.Version, describe)
	}
	if got, _ := exec.Command("./debversion.sh", info.Version, count).Output(); strings.TrimSpace(string(got)) != wantVersion {
		t.Fatalf("the installed mifike's version %q makes %q, the package is %q", info.Version, got, wantVersion)
	}

	// The files are what they should be, not just there.
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/mifike.service"))
	if err != nil {
		t.Fatal(err)
	}
	if src, _ := os.ReadFile(filepath.Join(top, "packaging/systemd/mifike.service")); !bytes.Equal(unit, src) {
		t.Error("the installed unit differs from packaging/systemd/mifike.service")
	}
	if man := gunzip(t, filepath.Join(root, "usr/share/man/man8/mifike.8.gz")); !strings.Contains(man, ".TH") {
		t.Errorf("mifike.8 is no manual page:\n%.300s", man)
	}
	for _, f := range []string{"usr/share/bash-completion/completions/mifike", "usr/share/zsh/vendor-completions/_mifike", "usr/share/fish/vendor_completions.d/mifike.fish"} {
		if b, err := os.ReadFile(filepath.Join(root, f)); err != nil || !bytes.Contains(b, []byte("mifike")) {
			t.Errorf("%s: %v, %.100q: no completion for mifike", f, err, b)
		}
	}
	if c := gunzip(t, filepath.Join(root, "usr/share/doc/mifike/copyright")); !strings.HasPrefix(c, "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/") {
		t.Errorf("copyright is not machine-readable (DEP-5):\n%.200s", c)
	}
	if cl := gunzip(t, filepath.Join(root, "usr/share/doc/mifike/changelog.gz")); !strings.HasPrefix(cl, "mifike ("+wantVersion+") ") {
		t.Errorf("changelog starts %.80q, want mifike (%s)", cl, wantVersion)
	}

	// Purge takes it all away again.
	run(t, ".", "dpkg", append(dpkg, "-P", "mifike")...)
	for _, f := range packaged {
		if _, err := os.Lstat(filepath.Join(root, f)); err == nil {
			t.Errorf("%s is still there after dpkg -P", f)
		}
	}
}

// run runs name in dir and returns its standard output, trimmed; a
// failure ends the test with what it printed.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// gunzip reads a file, through gzip when it is compressed.
func gunzip(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(path, ".gz") {
		return string(b)
	}
	z, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err = io.ReadAll(z)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(b)
}
