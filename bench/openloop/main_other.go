//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "openloop: Linux only (epoll_pwait2)")
	os.Exit(2)
}
