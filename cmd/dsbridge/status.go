package main

import (
	"errors"
	"io"
)

// runStatus is not implemented yet; its issue replaces this file.
func runStatus(args []string, stdout, stderr io.Writer) error {
	return errors.New("status: not implemented yet")
}
