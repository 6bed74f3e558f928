// Package version holds the build's version, set by the Makefile from `git describe`.
package version

// Version is overwritten at link time with -X.
var Version = "dev"
