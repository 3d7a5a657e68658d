package bus

// traceID is the trace id of a W3C traceparent ("00-<trace id>-<parent
// id>-<flags>") for log lines, or "" when it is not one.
func traceID(traceparent string) string {
	if len(traceparent) < 55 || traceparent[2] != '-' || traceparent[35] != '-' {
		return ""
	}
	return traceparent[3:35]
}
