module github.com/authgress/authgress

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/elazarl/goproxy v1.9.2
	golang.org/x/net v0.50.0
)

require golang.org/x/text v0.34.0 // indirect
