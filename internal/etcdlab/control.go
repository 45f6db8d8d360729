package etcdlab

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"time"
)

// The lab's etcd runs in a process of its own inside a network
// namespace (mifike lab-etcd); a test outside stops and restarts its
// members through a Unix socket, which, unlike a TCP port, is reached
// from any namespace. One command a line, one answer a line:
//
//	stop N     stop member N (from 0)          -> ok
//	start N    restart stopped member N         -> ok (once it serves)
//	anything else, or a failure                 -> error: ...

// Serve answers control commands on l until l is closed.
func (c *Cluster) Serve(l net.Listener) error {
	for {
		conn, err := l.Accept()
		if err != nil {
			return err
		}
		go c.serveConn(conn)
	}
}

func (c *Cluster) serveConn(conn net.Conn) {
	defer conn.Close()
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		answer := "ok"
		if err := c.command(sc.Text()); err != nil {
			answer = "error: " + strings.ReplaceAll(err.Error(), "\n", " ")
		}
		if _, err := fmt.Fprintln(conn, answer); err != nil {
			return
		}
	}
}

func (c *Cluster) command(line string) error {
	var verb string
	var i int
	if n, _ := fmt.Sscanf(line, "%s %d", &verb, &i); n != 2 {
		return fmt.Errorf("etcdlab: %q is not a command (stop N, start N)", line)
	}
	if i < 0 || i >= len(c.members) {
		return fmt.Errorf("etcdlab: no member %d (0 to %d)", i, len(c.members)-1)
	}
	switch verb {
	case "stop":
		c.Stop(i)
		return nil
	case "start":
		return c.Restart(i)
	}
	return fmt.Errorf("etcdlab: %q is not a command (stop N, start N)", line)
}

// Control sends one command to the control socket at path and returns
// the error it answered, if any. A restart may take a while (an
// election), so it waits up to a minute.
func Control(path, cmd string) error {
	conn, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := fmt.Fprintln(conn, cmd); err != nil {
		return err
	}
	answer, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("etcdlab: %s: %w", cmd, err)
	}
	if answer = strings.TrimSpace(answer); answer != "ok" {
		return fmt.Errorf("etcdlab: %s: %s", cmd, strings.TrimPrefix(answer, "error: "))
	}
	return nil
}
