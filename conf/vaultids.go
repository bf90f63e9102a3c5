package conf

import (
	"fmt"
	"strings"
)

// CCPForbidden are characters CyberArk does not support in query values.
const CCPForbidden = "+&%;"

// ParseCCPID splits a cyberark-ccp credential ID in the seeds' formats:
// "<object>", "<safe>:<object>" or "<safe>:<object>:<platform ID>". An empty
// safe part means the vault's default safe.
func ParseCCPID(id string) (safe, object, policyID string, err error) {
	parts := strings.Split(id, ":")
	switch len(parts) {
	case 1:
		object = parts[0]
	case 2:
		safe, object = parts[0], parts[1]
	case 3:
		safe, object, policyID = parts[0], parts[1], parts[2]
	default:
		return "", "", "", fmt.Errorf("CyberArk credential ID %q has %d parts: use <object>, <safe>:<object> or <safe>:<object>:<platform ID>", id, len(parts))
	}
	if object == "" {
		return "", "", "", fmt.Errorf("CyberArk credential ID %q names no object", id)
	}
	for _, v := range []string{safe, object, policyID} {
		if strings.ContainsAny(v, CCPForbidden) {
			return "", "", "", fmt.Errorf("CyberArk credential ID %q contains a character CyberArk does not support in queries (+ & %% ;)", id)
		}
	}
	return safe, object, policyID, nil
}

// checkVaultID reports whether id is a valid credential ID for vault v.
func checkVaultID(v *Vault, id string) error {
	switch v.Type {
	case "cyberark-ccp":
		safe, _, _, err := ParseCCPID(id)
		if err != nil {
			return err
		}
		if safe == "" && v.Safe == "" {
			return fmt.Errorf("CyberArk credential ID %q names no safe and the vault has no default safe (set safe, or write <safe>:<object>)", id)
		}
	case "hashicorp-kv":
		p := strings.Trim(id, "/")
		if p == "" || strings.Contains(p, "..") || strings.Contains(p, "//") {
			return fmt.Errorf("Vault KV path %q is not a valid secret path (like \"egress/oauth/client-a\")", id)
		}
	case "env":
		for _, r := range id {
			if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
				return fmt.Errorf("env vault ID %q must be letters, digits and underscores (it names <ID>_CLIENT_ID and <ID>_CLIENT_SECRET)", id)
			}
		}
	}
	return nil
}
