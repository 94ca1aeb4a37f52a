module github.com/wssproxy/wssproxy

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/coder/websocket v1.8.15
)

require go.uber.org/goleak v1.3.0
