package certpool_test

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wssproxy/wssproxy/internal/certpool"
	"github.com/wssproxy/wssproxy/internal/testutil"
)

// TestReadFile guards what a CA file may be: PEM certificates give a pool
// and the file's bytes; a missing file and a file with no PEM certificate
// are errors naming the problem.
func TestReadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, _ := testutil.Cert(t, "localhost")
	good := filepath.Join(dir, "ca.pem")
	os.WriteFile(good, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for _, tc := range []struct {
		name, file, wantErr string
	}{
		{"PEM certificate", good, ""},
		{"missing file", filepath.Join(dir, "missing.pem"), "no such file"},
		{"no PEM in it", notPEM, "not.pem: no PEM certificates"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, data, err := certpool.ReadFile(tc.file)
			if tc.wantErr == "" {
				if err != nil || pool == nil || len(data) == 0 {
					t.Fatalf("pool %v, %d bytes, err %v", pool, len(data), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || pool != nil {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}
