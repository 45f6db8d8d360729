package demo

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Scrape reads a daemon's Prometheus page at addr (its metrics.listen)
// from inside namespace ns. Series are keyed by their text in the page,
// name{labels}, which is what tests compare; the text format is read
// here line by line because expfmt's parser gives back label sets, not
// that text.
func Scrape(ns, addr string) (map[string]float64, error) {
	client := http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		// Dialled on a thread inside the namespace: the transport's own
		// goroutines run in ours.
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			var c net.Conn
			err := InNS(ns, func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, a)
				return err
			})
			return c, err
		},
		DisableKeepAlives: true,
	}}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scraping %s in %s: %w", addr, ns, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s in %s: %s", addr, ns, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			out[l[:i]] = v
		}
	}
	return out, sc.Err()
}
