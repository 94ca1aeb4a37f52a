package admin

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wssproxy/wssproxy/internal/cli"
	"github.com/wssproxy/wssproxy/internal/config"
)

// PasswordVar is where `wssproxy tunnels -user NAME` takes the password
// for admin.basic_auth: not a flag, so that it shows in no process list.
const PasswordVar = "WSSPROXY_ADMIN_PASSWORD"

// RunTunnels is `wssproxy tunnels`: the admin listener's open tunnels as a
// table (GET /tunnels), or with -close ID, that tunnel closed (POST
// /tunnels/ID/close).
func RunTunnels(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return RunTunnelsEnv(ctx, args, os.Getenv, stdout, stderr)
}

// RunTunnelsEnv is RunTunnels with the environment read through getenv.
func RunTunnelsEnv(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wssproxy tunnels", flag.ContinueOnError)
	addr := fs.String("admin", config.DefaultAdmin, "admin listener `address`")
	route := fs.String("route", "", "only the tunnels of this `route` (as the access log names it)")
	closeID := fs.String("close", "", "close the tunnel with this `id` (1008 to the client, 1001 to the backend)")
	sort := fs.String("sort", "id", "order: id, age, idle, route, client, bytes_in, bytes_out, messages_in, messages_out, throttled; -KEY descending")
	limit := fs.Int("limit", maxLimit, "at most this many rows")
	timeout := fs.Duration("timeout", 5*time.Second, "time limit")
	user := fs.String("user", "", "admin.basic_auth's `user`, its password in "+PasswordVar)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: wssproxy tunnels [flags]\n\nLists the open WebSocket tunnels the admin listener's GET /tunnels reports,\nor closes one. Flags:\n\n")
		fs.PrintDefaults()
	}
	if err := cli.ParseFlagsOnly(fs, args, stdout); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := &client{base: "http://" + *addr, user: *user}
	if *user != "" {
		if c.password = getenv(PasswordVar); c.password == "" {
			fmt.Fprintf(stderr, "wssproxy tunnels: -user %s: set the password in %s\n", *user, PasswordVar)
			return &cli.ExitError{Code: 2}
		}
	}
	if *closeID != "" {
		err := c.call(ctx, http.MethodPost, "/tunnels/"+url.PathEscape(*closeID)+"/close", nil)
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
	if err := c.call(ctx, http.MethodGet, "/tunnels?"+q.Encode(), &page); err != nil {
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

// client asks the admin listener at base, as user if set.
type client struct {
	base, user, password string
}

// call sends an empty method request to path and decodes a 200 answer's
// JSON into v (nil: ignored).
func (c *client) call(ctx context.Context, method, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		err := fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
		if resp.StatusCode == http.StatusUnauthorized && c.user == "" {
			err = fmt.Errorf("%w (the admin listener has admin.basic_auth: give -user NAME, the password in %s)", err, PasswordVar)
		}
		return err
	}
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
