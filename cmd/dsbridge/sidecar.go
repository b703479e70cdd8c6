package main

import (
	"errors"
	"io"
)

// runSidecar is not implemented yet; its issue replaces this file.
func runSidecar(args []string, stderr io.Writer) error {
	return errors.New("sidecar: not implemented yet")
}
