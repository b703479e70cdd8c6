package main

import (
	"errors"
	"io"
)

// runInspect is not implemented yet; its issue replaces this file.
func runInspect(args []string, stdout, stderr io.Writer) error {
	return errors.New("inspect: not implemented yet")
}
