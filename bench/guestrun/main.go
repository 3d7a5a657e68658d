// Command guestrun runs a Go test binary built for wasip1 (GOOS=wasip1
// GOARCH=wasm go test -c) under meshd's wazero, compiled with its
// termination checks as meshd compiles guests, with every function it
// imports from the "meshd" module answered by a stub that returns zero:
// the guest SDK's benchmarks use their own fake host, so they never reach
// the stubs, but the binary must link.
//
//	GOOS=wasip1 GOARCH=wasm go test -c -o /tmp/guest.wasm ./guest
//	go run ./bench/guestrun /tmp/guest.wasm -test.run '^$' -test.bench Call
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: guestrun TEST.wasm [test flags]")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "guestrun:", err)
		os.Exit(1)
	}
}

func run(path string, args []string) error {
	ctx := context.Background()
	bin, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// Compiled as meshd compiles guests: with close-on-context-done, which
	// in meshd's wazero adds its termination checks (at loop headers,
	// function entries and after calls; 15–27% of the SDK's call path).
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(true))
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	mod, err := r.CompileModule(ctx, bin)
	if err != nil {
		return err
	}
	b := r.NewHostModuleBuilder("meshd")
	for _, f := range mod.ImportedFunctions() {
		mname, name, _ := f.Import()
		if mname != "meshd" {
			continue
		}
		results := f.ResultTypes()
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
			for i := range results {
				stack[i] = 0
			}
		}), f.ParamTypes(), results).Export(name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return err
	}
	cfg := wazero.NewModuleConfig().WithArgs(args...).WithStdout(os.Stdout).WithStderr(os.Stderr).WithSysNanotime().WithSysWalltime()
	_, err = r.InstantiateModule(ctx, mod, cfg)
	return err
}
