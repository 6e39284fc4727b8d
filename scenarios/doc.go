// Package scenarios reads tuning scenario files (scenarios/*.yaml, see
// scenarios/README.md): a workload, its faults, the daemon settings to
// sweep, and expectations per cell. It expands a sweep into numbered
// cells and the plan each cell runs; the runner (package
// scenarios/runner) runs the plans, and the results format is package
// scenarios/results. The scenario library is built into the binary.
package scenarios
