package service

import (
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func cmpSorted() cmp.Option {
	return cmpopts.SortSlices(func(a, b string) bool { return a < b })
}
