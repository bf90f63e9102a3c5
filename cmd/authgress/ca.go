package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/authgress/authgress/intercept"
)

// cmdCA handles `authgress ca init --cert FILE --key FILE`.
func cmdCA(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprintln(stderr, "Usage: authgress ca init --cert FILE --key FILE [--name NAME] [--validity 87600h]")
		if len(args) == 1 && (args[0] == "--help" || args[0] == "-h") {
			return exitOK
		}
		return exitUsage
	}
	c := newCommand("ca init", "ca init --cert FILE --key FILE [--name NAME] [--validity DURATION]",
		"Write a new ECDSA P-256 interception CA for [intercept]: the certificate and its private key\n(mode 0600). Nothing is written if either file exists.", stdout, stderr)
	certPath := c.fs.String("cert", "", "where to write the CA certificate (PEM)")
	keyPath := c.fs.String("key", "", "where to write the CA private key (PEM, mode 0600)")
	name := c.fs.String("name", "authgress interception CA", "the CA's common name")
	validity := c.fs.Duration("validity", 10*365*24*time.Hour, "how long the CA is valid")
	if _, code, ok := c.parse(args[1:], 0, 0); !ok {
		return code
	}
	if *certPath == "" || *keyPath == "" {
		fmt.Fprintln(stderr, "authgress ca init: --cert and --key are required")
		c.fs.Usage()
		return exitUsage
	}
	for _, p := range []string{*certPath, *keyPath} {
		if _, err := os.Lstat(p); err == nil || !errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(stderr, "authgress ca init: %s exists: nothing was written (remove it, or choose other paths)\n", p)
			return exitProblem
		}
	}
	certPEM, keyPEM, err := intercept.NewCA(*name, *validity)
	if err != nil {
		fmt.Fprintf(stderr, "authgress ca init: %v\n", err)
		return exitProblem
	}
	if err := writeNew(*keyPath, keyPEM, 0o600); err != nil {
		fmt.Fprintf(stderr, "authgress ca init: %v\n", err)
		return exitProblem
	}
	if err := writeNew(*certPath, certPEM, 0o644); err != nil {
		_ = os.Remove(*keyPath)
		fmt.Fprintf(stderr, "authgress ca init: %v\n", err)
		return exitProblem
	}
	fmt.Fprintf(stdout, `wrote the interception CA certificate to %[1]s and its key to %[2]s (mode 0600).

Configure authgress:
  [intercept]
  ca_cert = %[1]q
  ca_key  = %[2]q

Then make your clients trust %[1]s (the certificate only; never copy the key):
  curl             curl --proxy http://127.0.0.1:3128 --cacert %[1]s https://api.example.com/
                   (or: export SSL_CERT_FILE=%[1]s, which replaces the system roots)
  Python requests  export REQUESTS_CA_BUNDLE=%[1]s
  Node.js          export NODE_EXTRA_CA_CERTS=%[1]s
  Go               add it to tls.Config.RootCAs, or SSL_CERT_FILE=%[1]s
  Java             keytool -importcert -noprompt -alias authgress -file %[1]s -keystore authgress-trust.p12 -storepass changeit
                   java -Djavax.net.ssl.trustStore=authgress-trust.p12 -Djavax.net.ssl.trustStorePassword=changeit ...
`, *certPath, *keyPath)
	return exitOK
}

// writeNew creates path with mode, failing if it exists.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		_ = os.Remove(path)
		return err
	}
	return f.Close()
}
