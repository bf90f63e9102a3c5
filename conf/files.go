package conf

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Readable reports whether the running process can read the file at path,
// by opening it and reading one byte: mode bits alone would not tell (root
// reads any file, ACLs and mounts may refuse). The error says why not, in
// words for a config problem.
func Readable(path string) error {
	// Non-blocking, so that opening a FIFO cannot hang check or a reload.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("file %q does not exist", path)
		case errors.Is(err, fs.ErrPermission):
			return fmt.Errorf("file %q cannot be read by this user (permission denied)", path)
		}
		return fmt.Errorf("cannot open file %q", path)
	}
	defer f.Close()
	fi, err := f.Stat()
	switch {
	case err != nil:
		return fmt.Errorf("cannot read file %q", path)
	case fi.IsDir():
		return fmt.Errorf("%q is a directory, not a file", path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%q is not a regular file", path)
	}
	if _, err := f.Read(make([]byte, 1)); err != nil && err != io.EOF {
		return fmt.Errorf("cannot read file %q", path)
	}
	return nil
}

// ProblemAt returns an error at the key path (like "profiles.partner.ca") of
// the config, placed at the line where that key is written. Checks outside
// this package that find problems with what a key names (a profile's
// certificate files, say) report them with it.
func (c *Config) ProblemAt(path, msg string) Problem {
	pos, _ := c.pos.lookup(path)
	return Problem{File: c.Path, Pos: pos, Path: path, Msg: msg}
}
