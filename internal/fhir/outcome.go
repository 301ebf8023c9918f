package fhir

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error is a client-visible failure. It renders as an OperationOutcome with
// the HTTP status Status.
type Error struct {
	Status int    // HTTP status, 4xx or 5xx
	Code   string // OperationOutcome issue code: invalid, not-found, conflict, ...
	Msg    string // human-readable diagnostics (never patient data)
	Expr   string // FHIRPath-like location of the problem, optional
}

func (e *Error) Error() string {
	if e.Expr != "" {
		return fmt.Sprintf("%s: %s", e.Expr, e.Msg)
	}
	return e.Msg
}

// Errorf builds an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Invalid is a 400 "invalid" error at a given element.
func Invalid(expr, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid", Msg: fmt.Sprintf(format, args...), Expr: expr}
}

// NotFound is a 404.
func NotFound(format string, args ...any) *Error {
	return Errorf(http.StatusNotFound, "not-found", format, args...)
}

// AsError converts any error to an *Error; unknown errors become a 500
// "exception" without their text (which may hold internal detail).
func AsError(err error) *Error {
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	return &Error{Status: http.StatusInternalServerError, Code: "exception", Msg: "internal error"}
}

// Issue is one OperationOutcome issue.
type Issue struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

// Outcome is an OperationOutcome resource.
type Outcome struct {
	ResourceType string  `json:"resourceType"`
	Issue        []Issue `json:"issue"`
}

// NewOutcome returns an OperationOutcome with one issue.
func NewOutcome(severity, code, diag string, expr ...string) *Outcome {
	return &Outcome{ResourceType: "OperationOutcome", Issue: []Issue{{Severity: severity, Code: code, Diagnostics: diag, Expression: expr}}}
}

// Outcome renders the error as an OperationOutcome.
func (e *Error) Outcome() *Outcome {
	sev := "error"
	if e.Status >= 500 {
		sev = "fatal"
	}
	var expr []string
	if e.Expr != "" {
		expr = []string{e.Expr}
	}
	return NewOutcome(sev, e.Code, e.Msg, expr...)
}

// JSON marshals an OperationOutcome.
func (o *Outcome) JSON() []byte {
	b, _ := json.Marshal(o)
	return b
}
