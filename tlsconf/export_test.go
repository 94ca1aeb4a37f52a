package tlsconf

// What the tests reach that the package does not export.
var (
	Fingerprint   = fingerprint
	ExpiryWarning = expiryWarning
)
