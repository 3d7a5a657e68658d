package gateway_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/gateway"
)

// helloInvoker stands in for the runtime: it answers every request with
// the route and parameters it was given.
type helloInvoker struct{}

func (helloInvoker) InvokeHTTP(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error {
	resp.Status = 200
	resp.Body = fmt.Appendf(nil, `{"service":%q,"route":%q,"id":%q}`, service, req.Route, req.Params[0].Value)
	return nil
}

func Example() {
	g := gateway.New(gateway.Config{}, helloInvoker{}, nil)
	if err := g.SetRoutes([]gateway.Route{
		{Service: "orders", Method: "GET", Path: "/orders/{id}"},
	}); err != nil {
		fmt.Println(err)
		return
	}

	w := httptest.NewRecorder()
	g.ServeHTTP(w, httptest.NewRequest("GET", "/orders/42", nil))
	fmt.Println(w.Code, w.Header().Get("Content-Type"), w.Body)

	w = httptest.NewRecorder()
	g.ServeHTTP(w, httptest.NewRequest("POST", "/orders/42", nil))
	fmt.Println(w.Code, w.Header().Get("Content-Type"), w.Header().Get("Allow"))
	// Output:
	// 200 application/json {"service":"orders","route":"GET /orders/{id}","id":"42"}
	// 405 application/problem+json GET, HEAD
}

func ExampleGateway_SetRoutes_conflict() {
	g := gateway.New(gateway.Config{}, helloInvoker{}, nil)
	err := g.SetRoutes([]gateway.Route{
		{Service: "orders", Method: "GET", Path: "/items/{id}"},
		{Service: "stock", Method: "GET", Path: "/items/{sku}"},
	})
	fmt.Println(err)
	// Output:
	// gateway: route "GET /items/{sku}" is declared by both service "orders" and service "stock"
}
