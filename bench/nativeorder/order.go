package nativeorder

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
)

const maxItems = 100

type item struct {
	Name  string `json:"name"`
	Price int64  `json:"price"`
}

type createRequest struct {
	UserID *string `json:"user_id"`
	Items  []item  `json:"items"`
}

type order struct {
	ID        string `json:"id"`
	UserID    string `json:"user_id"`
	Items     []item `json:"items"`
	Total     int64  `json:"total"`
	Status    string `json:"status"`
	CreatedAt string `json:"created_at"`
	// Set by the saga (saga.go).
	PaymentID   string `json:"payment_id,omitempty"`
	PaidAt      string `json:"paid_at,omitempty"`
	Reason      string `json:"reason,omitempty"`
	CancelledAt string `json:"cancelled_at,omitempty"`
}

type problemDoc struct {
	Type     string   `json:"type"`
	Title    string   `json:"title"`
	Status   int      `json:"status"`
	Detail   string   `json:"detail"`
	Problems []string `json:"problems,omitempty"`
}

func problem(w http.ResponseWriter, status int, detail string, problems []string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(problemDoc{Type: "about:blank", Title: "invalid order", Status: status, Detail: detail, Problems: problems})
}

func createOrder(w http.ResponseWriter, r *http.Request, fx *Effects) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		problem(w, http.StatusRequestEntityTooLarge, err.Error(), nil)
		return
	}
	var req createRequest
	if err := json.Unmarshal(body, &req); err != nil {
		problem(w, http.StatusBadRequest, "body is not valid JSON: "+err.Error(), nil)
		return
	}
	var problems []string
	if req.UserID == nil || strings.TrimSpace(*req.UserID) == "" {
		problems = append(problems, "user_id is required")
	}
	if len(req.Items) == 0 {
		problems = append(problems, "items: at least one item is required")
	}
	if len(req.Items) > maxItems {
		problems = append(problems, fmt.Sprintf("items: at most %d items are allowed", maxItems))
	}
	var total int64
	for i, it := range req.Items {
		if strings.TrimSpace(it.Name) == "" {
			problems = append(problems, fmt.Sprintf("items[%d].name is required", i))
		}
		if it.Price <= 0 {
			problems = append(problems, fmt.Sprintf("items[%d].price must be positive", i))
		}
		if total > math.MaxInt64-it.Price {
			problems = append(problems, "items: the total price is too large")
			break
		}
		total += it.Price
	}
	if len(problems) > 0 {
		problem(w, http.StatusBadRequest, strings.Join(problems, "; "), problems)
		return
	}
	o := order{
		ID:        uuid.NewString(),
		UserID:    *req.UserID,
		Items:     req.Items,
		Total:     total,
		Status:    "CREATED",
		CreatedAt: time.Now().UTC().Format(time.RFC3339Nano),
	}
	data, err := json.Marshal(o)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if fx != nil {
		if err := fx.apply(r.Context(), o.ID, data); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/orders/"+o.ID)
	w.WriteHeader(http.StatusCreated)
	w.Write(data)
}
