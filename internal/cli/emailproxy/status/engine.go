package status

import "github.com/senhasegura/orbit/internal/cli/emailproxy/service"

// Process is a running serve (service.Process).
type Process = service.Process

// ReadProcesses lists the running serve processes (service.ReadProcesses).
func ReadProcesses() ([]Process, error) { return service.ReadProcesses() }

// Engine is the proxy process status found running.
type Engine struct {
	PID int `json:"pid"`
	// Manager is "systemd" (the unit's main process) or "foreground"
	// (serve started by hand, outside any unit).
	Manager string `json:"manager"`
}

// Engine managers.
const (
	ManagedBySystemd = "systemd"
	Foreground       = "foreground"
)
