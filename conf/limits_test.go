package conf

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// parseWithin parses text and fails the test if that takes longer than d.
func parseWithin(t *testing.T, d time.Duration, text []byte) Problems {
	t.Helper()
	done := make(chan Problems, 1)
	go func() {
		_, probs := Parse("authgress.toml", text)
		done <- probs
	}()
	select {
	case probs := <-done:
		return probs
	case <-time.After(d):
		t.Fatalf("Parse did not return within %s", d)
		return nil
	}
}

// TestBOMAccepted: a config file that starts with a UTF-8 byte order mark
// used to make the position scanner loop forever.
func TestBOMAccepted(t *testing.T) {
	path := writeConfig(t, utf8BOM+validConfig)
	done := make(chan Problems, 1)
	go func() { _, probs := Load(path); done <- probs }()
	select {
	case probs := <-done:
		if probs.HasErrors() {
			t.Fatalf("config with a BOM refused:\n%v", probs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Load did not return within 5s on a config that starts with a BOM")
	}
	probs := parseWithin(t, 5*time.Second, []byte(utf8BOM+"[server]\nlisen = 'x'\n"))
	if !strings.Contains(probs.Error(), "authgress.toml:2:1: error: server.lisen: unknown key") {
		t.Fatalf("want the unknown key on line 2, got:\n%v", probs)
	}
}

func TestSizeCap(t *testing.T) {
	big := bytes.Repeat([]byte("# padding padding padding padding\n"), MaxConfigSize/34+10)
	path := filepath.Join(t.TempDir(), "big.toml")
	if err := os.WriteFile(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	_, probs := Load(path)
	if len(probs) != 1 || !strings.Contains(probs[0].Msg, "larger than 4 MiB") {
		t.Fatalf("want one 'larger than 4 MiB' problem, got:\n%v", probs)
	}
	// Just under the cap is read.
	ok := append([]byte(validConfig), bytes.Repeat([]byte("#"), MaxConfigSize-len(validConfig)-1)...)
	ok = append(ok, '\n')
	if _, probs := Load(writeConfig(t, string(ok))); probs.HasErrors() {
		t.Fatalf("a config of exactly %d bytes was refused:\n%v", len(ok), probs)
	}
}

// TestNestingCap: deeply nested input is refused before the TOML library
// sees it (100k nested inline tables exhaust memory inside the library).
func TestNestingCap(t *testing.T) {
	deepTables := "[server]\n" + "a=" + strings.Repeat("{a=", 100000) + "1" + strings.Repeat("}", 100000) + "\n"
	deepArrays := "x = " + strings.Repeat("[", 200000) + strings.Repeat("]", 200000) + "\n"
	deepKey := "\n\n" + strings.Repeat("a.", 1000) + "a = 1\n"
	deepHeader := "[" + strings.Repeat("a.", 100) + "a]\n"
	for name, text := range map[string]string{"inline tables": deepTables, "arrays": deepArrays, "dotted key": deepKey, "header": deepHeader} {
		t.Run(name, func(t *testing.T) {
			probs := parseWithin(t, 5*time.Second, []byte(text))
			if len(probs) != 1 || !strings.Contains(probs[0].Msg, "more than 64 levels") || probs[0].Pos.Line < 1 {
				t.Fatalf("want one nesting problem with a line, got:\n%v", probs)
			}
		})
	}
	// Nesting up to the cap is fine for the scan (the schema refuses it later).
	ok := "x = " + strings.Repeat("[", MaxNesting-1) + strings.Repeat("]", MaxNesting-1) + "\n"
	if _, _, deep := nestingDepth([]byte(ok), MaxNesting); deep {
		t.Fatal("nesting at the cap refused")
	}
}

func TestNestingDepth(t *testing.T) {
	cases := []struct {
		text string
		want int
	}{
		{"a = 1", 1},
		{"a.b.c = 1", 3},
		{"[a.b]\nc = 1", 3},
		{"[[a]]\nx = 1", 3},
		{"a = {b = {c = 1}}", 3},
		{"a = [[1]]", 3},
		{"a = [{b = [1]}]", 4},
		{"a = '[[[[' # [[[[", 1},
		{"a = \"\"\"\n[[[[\\\"\"\"\"\"\nb = 1", 1},
		{"\"a.b\" = 1", 1},
		{"a = '''x'''\n[b]\nc = 1", 2},
	}
	for _, tc := range cases {
		got, _, _ := nestingDepth([]byte(tc.text), MaxNesting)
		if got != tc.want {
			t.Errorf("nestingDepth(%q) = %d, want %d", tc.text, got, tc.want)
		}
	}
}

// TestProblemCap: a file of hundreds of thousands of mistakes lists the first
// MaxProblems and says there are more, instead of spending seconds on each.
func TestProblemCap(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 50000; i++ {
		b.WriteString("[t" + strconv.Itoa(i) + "]\n")
	}
	probs := parseWithin(t, 10*time.Second, []byte(b.String()))
	if len(probs) != MaxProblems+1 || !strings.Contains(probs[MaxProblems].Msg, "more problems not shown") {
		t.Fatalf("got %d problems, last: %v", len(probs), probs[len(probs)-1])
	}
}
