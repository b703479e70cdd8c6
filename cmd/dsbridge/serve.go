package main

import (
	"errors"
	"io"
)

// runServe is not implemented yet; its issue replaces this file.
func runServe(args []string, stderr io.Writer) error {
	return errors.New("serve: not implemented yet")
}
