package kernel

// The object is rebuilt by `make generate`, which installs the pinned clang
// (Debian bookworm clang-16 1:16.0.6-15~deb12u1). The BTF line info names
// the source relative to the compilation directory "." and DWARF is
// stripped (the BTF stays), so the bytes do not depend on the checkout's
// path: the same clang gives the same object.
//go:generate sh -c "clang-16 -O2 -g -Wall -Werror -target bpfel -mcpu=v2 -fdebug-compilation-dir=. -c bpf/responder.c -o responder.o && llvm-strip-16 -g responder.o"
