package main

import (
	"errors"
	"io"
)

// runTeardown is not implemented yet; its issue replaces this file.
func runTeardown(args []string, stdout, stderr io.Writer) error {
	return errors.New("teardown: not implemented yet")
}
