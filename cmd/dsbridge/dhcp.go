package main

import (
	"errors"
	"io"
)

// runDHCP is not implemented yet; its issue replaces this file.
func runDHCP(args []string, stdout, stderr io.Writer) error {
	return errors.New("dhcp: not implemented yet")
}
