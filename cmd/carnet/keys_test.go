package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestKeysCommands: seed makes a 0600 key file beside the data directory;
// the store refuses to open with a wrong, missing or loose key file, with
// messages that say what to do; rotate retires the old file and makes new
// data keys; reseal re-encrypts everything; the store then opens with the
// new key file only; a store in clear is refused unless asked for.
func TestKeysCommands(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "d")
	key := data + ".key"
	if code, out, errs := runCmd(t, "seed", "--data", data, "--patients", "40"); code != 0 {
		t.Fatalf("seed: %d %s %s", code, out, errs)
	} else if !strings.Contains(errs, "created the key-encryption key "+key) {
		t.Errorf("seed did not say where the key file is: %s", errs)
	}
	st, err := os.Stat(key)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v, mode %v", key, err, st.Mode())
	}
	status := func(args ...string) (int, string, string) {
		return runCmd(t, append([]string{"keys", "status", "--data", data}, args...)...)
	}
	code, out, errs := status()
	if code != 0 || !strings.Contains(out, "(group)\tcurrent") || !strings.Contains(out, "#index\tcurrent") || strings.Count(out, "\tcurrent") < 19 {
		t.Fatalf("status (want group, index and 17 facility keys): %d %s %s", code, out, errs)
	}
	oldID := regexp.MustCompile(`\(key (file:[0-9a-f]+)\)`).FindStringSubmatch(out)[1]

	// Wrong, missing, loose key files.
	other := filepath.Join(dir, "other.key")
	if code, _, errs := runCmd(t, "keys", "init", "--key-file", other); code != 0 {
		t.Fatal(errs)
	}
	if code, _, errs := status("--key-file", other); code != 1 || !strings.Contains(errs, "wrapped by key "+oldID) || !strings.Contains(errs, "not by the given key file") {
		t.Errorf("wrong key file: %d %s", code, errs)
	}
	if code, _, errs := status("--key-file", filepath.Join(dir, "none.key")); code != 1 || !strings.Contains(errs, "is sealed and needs the key file it was sealed with") {
		t.Errorf("missing key file: %d %s", code, errs)
	}
	os.Chmod(key, 0o644)
	if code, _, errs := status(); code != 1 || !strings.Contains(errs, "chmod 600") {
		t.Errorf("key file readable by others: %d %s", code, errs)
	}
	os.Chmod(key, 0o600)
	if code, _, errs := runCmd(t, "keys", "init", "--key-file", key); code != 1 || !strings.Contains(errs, "never overwritten") {
		t.Errorf("init over an existing key file: %d %s", code, errs)
	}
	if code, _, errs := runCmd(t, "serve", "--data", data, "--insecure-clear", "--addr", "127.0.0.1:0"); code != 1 || !strings.Contains(errs, "is sealed") {
		t.Errorf("serve a sealed store as clear: %d %s", code, errs)
	}

	// Rotate, then reseal.
	code, out, errs = runCmd(t, "keys", "rotate", "--data", data)
	if code != 0 || !strings.Contains(out, "rotated") {
		t.Fatalf("rotate: %d %s %s", code, out, errs)
	}
	retired, _ := filepath.Glob(key + ".retired-*")
	if len(retired) != 1 {
		t.Fatalf("retired key files: %v", retired)
	}
	if code, _, errs := status("--key-file", retired[0]); code != 1 || !strings.Contains(errs, "not by the given key file") {
		t.Errorf("the retired key file still opens the store: %d %s", code, errs)
	}
	code, out, _ = status()
	if code != 0 || strings.Contains(out, oldID) || !strings.Contains(out, "(group)\tretired") || !strings.Contains(out, "#index\tcurrent") {
		t.Errorf("status after rotate: %s", out)
	}
	code, out, errs = runCmd(t, "keys", "reseal", "--data", data)
	n := regexp.MustCompile(`resealed (\d+) record versions`).FindStringSubmatch(out)
	if code != 0 || n == nil || n[1] == "0" || !strings.Contains(errs, "resealing") {
		t.Fatalf("reseal: %d %s %s", code, out, errs)
	}
	if code, out, _ := runCmd(t, "keys", "reseal", "--data", data); code != 0 || !strings.Contains(out, "resealed 0 record versions") {
		t.Errorf("second reseal: %s", out)
	}

	// A store in clear is refused unless served as such.
	clear := filepath.Join(dir, "c")
	if code, _, errs := runCmd(t, "seed", "--data", clear, "--patients", "5", "--insecure-clear"); code != 0 {
		t.Fatal(errs)
	}
	if _, err := os.Stat(clear + ".key"); err == nil {
		t.Errorf("--insecure-clear made a key file")
	}
	if code, _, errs := runCmd(t, "keys", "status", "--data", clear); code != 1 || !strings.Contains(errs, "holds resources in clear") {
		t.Errorf("clear store opened as sealed: %d %s", code, errs)
	}
}
