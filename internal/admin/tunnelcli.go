package admin

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wssproxy/wssproxy/internal/cli"
	"github.com/wssproxy/wssproxy/internal/config"
)

// RunTunnels is `wssproxy tunnels`: the admin listener's open tunnels as a
// table (GET /tunnels), or with -close ID, that tunnel closed (POST
// /tunnels/ID/close).
func RunTunnels(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wssproxy tunnels", flag.ContinueOnError)
	addr := fs.String("admin", config.DefaultAdmin, "admin listener `address`")
	route := fs.String("route", "", "only the tunnels of this `route` (as the access log names it)")
	closeID := fs.String("close", "", "close the tunnel with this `id` (1008 to the client, 1001 to the backend)")
	sort := fs.String("sort", "id", "order: id, age, idle, route, client, bytes_in, bytes_out, messages_in, messages_out, throttled; -KEY descending")
	limit := fs.Int("limit", maxLimit, "at most this many rows")
	timeout := fs.Duration("timeout", 5*time.Second, "time limit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: wssproxy tunnels [flags]\n\nLists the open WebSocket tunnels the admin listener's GET /tunnels reports,\nor closes one. Flags:\n\n")
		fs.PrintDefaults()
	}
	if err := cli.ParseFlagsOnly(fs, args, stdout); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	base := "http://" + *addr
	if *closeID != "" {
		err := call(ctx, http.MethodPost, base+"/tunnels/"+url.PathEscape(*closeID)+"/close", nil)
		if err != nil {
			fmt.Fprintln(stderr, "wssproxy tunnels:", err)
			return &cli.ExitError{Code: 1}
		}
		fmt.Fprintf(stdout, "tunnel %s: close frames sent (1008 to the client, 1001 to the backend)\n", *closeID)
		return nil
	}
	q := url.Values{"sort": {*sort}, "limit": {fmt.Sprint(*limit)}}
	if *route != "" {
		q.Set("route", *route)
	}
	var page TunnelPage
	if err := call(ctx, http.MethodGet, base+"/tunnels?"+q.Encode(), &page); err != nil {
		fmt.Fprintln(stderr, "wssproxy tunnels:", err)
		return &cli.ExitError{Code: 1}
	}
	WriteTunnelTable(stdout, page, time.Now())
	return nil
}

// WriteTunnelTable writes page as a table for a terminal.
func WriteTunnelTable(w io.Writer, page TunnelPage, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROUTE\tCLIENT\tBACKEND\tPROTO\tIO\tAGE\tIDLE\tMSGS IN\tBYTES IN\tMSGS OUT\tBYTES OUT\tTHROTTLED")
	for _, t := range page.Tunnels {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", t.ID, t.Route,
			hostPort(t.ClientIP, t.ClientPort), t.Backend, t.Protocol, t.IO,
			round(time.Duration(t.AgeSeconds*float64(time.Second))), round(t.Idle(now)),
			t.In.Messages, t.In.Bytes, t.Out.Messages, t.Out.Bytes,
			round(time.Duration(t.ThrottledSeconds*float64(time.Second))))
	}
	tw.Flush()
	plural := "s"
	if page.Total == 1 {
		plural = ""
	}
	if shown := len(page.Tunnels); page.Total != shown {
		fmt.Fprintf(w, "%d of %d tunnel%s shown\n", shown, page.Total, plural)
	} else {
		fmt.Fprintf(w, "%d tunnel%s\n", shown, plural)
	}
}

func hostPort(ip string, port int) string {
	if strings.Contains(ip, ":") {
		return fmt.Sprintf("[%s]:%d", ip, port)
	}
	return fmt.Sprintf("%s:%d", ip, port)
}

func round(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// call sends an empty method request to u and decodes a 200 answer's JSON
// into v (nil: ignored).
func call(ctx context.Context, method, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
