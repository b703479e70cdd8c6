// Command dsbridge-cni is dsbridge's binding CNI plugin.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "dsbridge-cni: not implemented yet")
	os.Exit(1)
}
